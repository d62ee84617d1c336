package firmwaresim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tern-im/tern/client"
	"github.com/tern-im/tern/internal/adminapi"
)

// Fleet is what provisioning created: the devices file `run` reads.
type Fleet struct {
	Server string  `json:"server"`
	Users  []User  `json:"users"`
	Groups []Group `json:"groups"`
}

// User is a simulated user with its devices.
type User struct {
	UID     string        `json:"uid"`
	Devices []Credentials `json:"devices"`
}

// Group is a simulated group. Created is false while the broker could
// not create it (no group.create yet).
type Group struct {
	GID     string   `json:"gid"`
	Owner   string   `json:"owner"`
	Members []string `json:"members"`
	Created bool     `json:"created"`
}

// Devices lists every device of the fleet in a stable order; a device's
// position is its index in a run.
func (f *Fleet) Devices() []Credentials {
	var out []Credentials
	for _, u := range f.Users {
		out = append(out, u.Devices...)
	}
	return out
}

// LoadFleet reads a devices file.
func LoadFleet(path string) (*Fleet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f Fleet
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("devices file %s: %w", path, err)
	}
	return &f, nil
}

// Save writes the devices file (0600: it holds device tokens).
func (f *Fleet) Save(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ProvisionOptions say what to create.
type ProvisionOptions struct {
	Server     string // admin API base URL
	AdminToken string
	// MQTT is host:port of the MQTT listener, for group.create; empty
	// skips groups.
	MQTT           string
	Prefix         string // user ids are {prefix}{00001…}
	Users          int
	DevicesPerUser int
	Groups         int
	GroupSize      int
	Out            string // devices file, read first if it exists
	Workers        int
	// RPCTimeout bounds hello and group.create; 0 means 5s.
	RPCTimeout time.Duration
	Log        func(format string, args ...any)
}

// ProvisionResult counts what provisioning did.
type ProvisionResult struct {
	UsersCreated, UsersExisting int
	TokensCreated               int
	GroupsCreated, GroupsKept   int
	// GroupsSkipped is set with a warning when the broker cannot create
	// groups yet.
	GroupsSkipped int
	Warning       string
}

// UID returns the user id of simulated user i (from 1).
func UID(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i) }

// Provision creates users, device tokens and groups; it is idempotent:
// existing users are reused and only missing tokens and groups are
// created. The devices file is saved after each phase.
func Provision(ctx context.Context, o ProvisionOptions) (*Fleet, ProvisionResult, error) {
	var res ProvisionResult
	if o.Prefix == "" {
		o.Prefix = "sim"
	}
	if o.DevicesPerUser <= 0 {
		o.DevicesPerUser = 1
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if o.Groups > 0 && (o.GroupSize < 2 || o.GroupSize > o.Users) {
		return nil, res, fmt.Errorf("group size %d must be within 2..users (%d)", o.GroupSize, o.Users)
	}
	fleet := &Fleet{Server: o.Server}
	if old, err := LoadFleet(o.Out); err == nil {
		fleet = old
		fleet.Server = o.Server
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, res, err
	}
	have := map[string]*User{}
	for i := range fleet.Users {
		have[fleet.Users[i].UID] = &fleet.Users[i]
	}
	cl := adminapi.NewClient(o.Server, o.AdminToken)
	// Leave no idle keep-alive connection behind: a broker shutting down
	// waits for connections that never sent a request.
	defer cl.HTTP.CloseIdleConnections()
	users := make([]User, o.Users)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				u, created, tokens, err := provisionUser(ctx, cl, o, UID(o.Prefix, i+1), have[UID(o.Prefix, i+1)])
				mu.Lock()
				users[i] = u
				if err != nil {
					errs = append(errs, err)
				} else if created {
					res.UsersCreated++
				} else {
					res.UsersExisting++
				}
				res.TokensCreated += tokens
				mu.Unlock()
			}
		}()
	}
	for i := range o.Users {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return nil, res, fmt.Errorf("provision users: %w", errors.Join(errs[:min(len(errs), 5)]...))
	}
	if err := ctx.Err(); err != nil {
		return nil, res, err
	}
	// Keep users of a larger earlier run: re-running smaller is safe.
	for _, u := range fleet.Users {
		if !hasUID(users, u.UID) {
			users = append(users, u)
		}
	}
	fleet.Users = users
	if err := fleet.Save(o.Out); err != nil {
		return nil, res, err
	}
	o.Log("users: %d created, %d existing; %d tokens created", res.UsersCreated, res.UsersExisting, res.TokensCreated)
	if o.Groups == 0 {
		return fleet, res, nil
	}
	planGroups(fleet, o)
	if err := createGroups(ctx, fleet, o, &res); err != nil {
		return nil, res, err
	}
	return fleet, res, fleet.Save(o.Out)
}

func hasUID(us []User, uid string) bool {
	for _, u := range us {
		if u.UID == uid {
			return true
		}
	}
	return false
}

// provisionUser makes sure uid exists and has o.DevicesPerUser devices
// with a token each.
func provisionUser(ctx context.Context, cl *adminapi.Client, o ProvisionOptions, uid string, old *User) (User, bool, int, error) {
	u := User{UID: uid}
	if old != nil {
		u.Devices = append(u.Devices, old.Devices...)
	}
	created := false
	if old == nil {
		pw, err := randomHex(16)
		if err != nil {
			return u, false, 0, err
		}
		switch err := cl.AddUser(ctx, uid, pw, false); {
		case err == nil:
			created = true
		case strings.Contains(err.Error(), "(409)"):
			// It exists from a run whose devices file is gone: new tokens.
		default:
			return u, false, 0, fmt.Errorf("add user %s: %w", uid, err)
		}
	}
	tokens := 0
	for j := len(u.Devices); j < o.DevicesPerUser; j++ {
		did := fmt.Sprintf("d%d", j+1)
		t, err := cl.CreateToken(ctx, uid, did)
		if err != nil {
			return u, created, tokens, fmt.Errorf("token %s.%s: %w", uid, did, err)
		}
		u.Devices = append(u.Devices, Credentials{UID: uid, DID: did, Token: t.Secret})
		tokens++
	}
	return u, created, tokens, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// planGroups adds the groups the options ask for that the fleet lacks:
// group g has GroupSize consecutive users starting at g×GroupSize
// (wrapping), the first of them owning it.
func planGroups(f *Fleet, o ProvisionOptions) {
	have := map[string]bool{}
	for _, g := range f.Groups {
		have[g.GID] = true
	}
	for g := range o.Groups {
		gid := fmt.Sprintf("%sg%04d", o.Prefix, g+1)
		if have[gid] {
			continue
		}
		var members []string
		for k := range o.GroupSize {
			members = append(members, UID(o.Prefix, (g*o.GroupSize+k)%o.Users+1))
		}
		f.Groups = append(f.Groups, Group{GID: gid, Owner: members[0], Members: members})
	}
}

// createGroups creates the fleet's uncreated groups over MQTT as their
// owners' first devices (group.create, §9). A broker that does not answer
// hello leaves them uncreated with a warning.
func createGroups(ctx context.Context, f *Fleet, o ProvisionOptions, res *ProvisionResult) error {
	creds := map[string]Credentials{}
	for _, u := range f.Users {
		if len(u.Devices) > 0 {
			creds[u.UID] = u.Devices[0]
		}
	}
	pending := 0
	for _, g := range f.Groups {
		if !g.Created {
			pending++
		} else {
			res.GroupsKept++
		}
	}
	if pending == 0 {
		return nil
	}
	if o.MQTT == "" {
		res.GroupsSkipped = pending
		res.Warning = "groups not created: no --mqtt address for group.create"
		return nil
	}
	for i := range f.Groups {
		g := &f.Groups[i]
		if g.Created {
			continue
		}
		cr, ok := creds[g.Owner]
		if !ok {
			return fmt.Errorf("group %s: owner %s has no device", g.GID, g.Owner)
		}
		err := CreateGroup(ctx, o.MQTT, cr, *g, o.RPCTimeout)
		var re *client.RPCError
		switch {
		case errors.As(err, &re) && re.Code == 409:
			res.GroupsKept++
			err = nil
		case err == nil:
			res.GroupsCreated++
		}
		if errors.Is(err, ErrNoMessaging) || errors.Is(err, ErrRPCTimeout) {
			res.GroupsSkipped = pending - res.GroupsCreated
			res.Warning = "groups not created: the broker does not answer hello/group.create (messaging not available); re-run provision once it does"
			return nil
		}
		if err != nil {
			return fmt.Errorf("group %s: %w", g.GID, err)
		}
		g.Created = true
	}
	o.Log("groups: %d created, %d existing", res.GroupsCreated, res.GroupsKept)
	return nil
}

// CreateGroup creates g over MQTT as its owner's device cr (group.create,
// §9). An RPCError with code 409 means it exists.
func CreateGroup(ctx context.Context, mqttAddr string, cr Credentials, g Group, rpcTimeout time.Duration) error {
	runID, err := randomHex(4)
	if err != nil {
		return err
	}
	return withDevice(ctx, mqttAddr, cr, NewAccounting(), runID, rpcTimeout, func(d *Device) error {
		var out struct {
			GID string `json:"gid"`
			CV  string `json:"cv"`
		}
		return d.Call(ctx, "group.create", map[string]any{"name": g.GID, "members": g.Members[1:], "gid": g.GID}, &out)
	})
}

// withDevice connects one device, waits until it is online (synced) and
// runs fn, then disconnects it.
func withDevice(ctx context.Context, mqttAddr string, cr Credentials, acc *Accounting, runID string, rpcTimeout time.Duration, fn func(*Device) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, err := NewDevice(DeviceOptions{
		Creds: cr, QoS: 1, Clean: true, RunID: runID, Acc: acc, Index: -1, RPCTimeout: rpcTimeout,
		Dial: func() (net.Conn, error) { return net.DialTimeout("tcp", mqttAddr, 10*time.Second) },
	})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !d.Online() {
		select {
		case err := <-errc:
			return err
		case <-deadline:
			return fmt.Errorf("device %s: not online after 30s", cr.ClientID())
		case <-tick.C:
		}
	}
	err = fn(d)
	cancel()
	<-errc
	return err
}

// Package auth is the Tern authentication hook: it checks each CONNECT
// against the accounts (password or device token), enforces ClientID =
// {uid}.{did}, admits anonymous clients only on listeners that allow them,
// throttles repeated failures, and registers the session of every accepted
// connection.
package auth

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/metrics"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// Accounts is what the hook needs of the accounts (*accounts.Service).
type Accounts interface {
	// Authenticate checks a device's credentials: the identity, or an
	// error matching accounts.ErrBadCredentials or accounts.ErrDisabled.
	Authenticate(uid, did, secret string) (topics.Identity, error)
	// OnPasswordChange registers fn to run after each password change.
	OnPasswordChange(fn func(uid string))
}

// Options configures the hook.
type Options struct {
	Server   *mqtt.Server // to send CONNACKs with Tern's reason codes
	Accounts Accounts
	Sessions *session.Registry
	Metrics  *metrics.Metrics
	// Anonymous lists the listener ids that admit clients without
	// credentials.
	Anonymous map[string]bool
	// MaxFailures per user before lockouts start (per address: 4×).
	MaxFailures int
	// Lockout is the first lockout, doubled per further failure up to
	// MaxLockout.
	Lockout, MaxLockout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SweepEvery is how often sessions of closed connections are looked
	// for (auth.session_sweep); it must be positive.
	SweepEvery time.Duration
	// Audit records every login outcome and every lockout; nil means
	// audit.Discard.
	Audit audit.Logger
}

// Hook authenticates connections.
type Hook struct {
	mqtt.HookBase
	opts     *Options
	throttle *throttle
	refusals *refusalLog
	// pwLocks order password logins against password changes: a login
	// holds its uid's stripe for reading from reading the hash until its
	// session is registered; a change takes it for writing before it
	// lists the sessions to end, so none that used the old hash is missed.
	pwLocks [64]sync.RWMutex
	stop    chan struct{}
	wg      sync.WaitGroup
	// suspects are the connections the last sweep found closed; only
	// the sweep goroutine touches it.
	suspects map[*mqtt.Client]bool
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-auth" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnDisconnect, mqtt.OnStarted,
		mqtt.OnPacketRead, mqtt.OnPacketEncode}, []byte{b})
}

// Init takes *Options.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil || o.Server == nil || o.Accounts == nil || o.Sessions == nil || o.Metrics == nil {
		return mqtt.ErrInvalidConfigType
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	if o.SweepEvery <= 0 {
		return fmt.Errorf("auth: SweepEvery must be positive, not %v", o.SweepEvery)
	}
	h.opts = o
	h.throttle = newThrottle(o.MaxFailures, o.Lockout, o.MaxLockout)
	h.refusals = newRefusalLog(maxLoggedAddrs)
	o.Accounts.OnPasswordChange(h.passwordChanged)
	return nil
}

// passwordChanged disconnects the sessions of uid that logged in with a
// password; token sessions stay.
func (h *Hook) passwordChanged(uid string) {
	l := h.pwLock(uid)
	l.Lock()
	var victims []*mqtt.Client
	h.opts.Sessions.Range(func(cl *mqtt.Client, s *session.Session) bool {
		if s.UID == uid && s.Method == session.MethodPassword {
			victims = append(victims, cl)
		}
		return true
	})
	l.Unlock()
	for _, cl := range victims {
		if cl.Properties.ProtocolVersion == 5 {
			// The connection is closed below whether or not this is written.
			_ = h.opts.Server.DisconnectClient(cl, packets.ErrAdministrativeAction)
		}
		cl.Stop(packets.ErrAdministrativeAction)
	}
	if len(victims) > 0 {
		h.Log.Info("password changed: disconnected password sessions", "user", uid, "sessions", len(victims))
	}
}

// pwLock returns the lock stripe of uid.
func (h *Hook) pwLock(uid string) *sync.RWMutex {
	f := fnv.New32a()
	f.Write([]byte(uid)) // never fails
	return &h.pwLocks[f.Sum32()%uint32(len(h.pwLocks))]
}

// OnStarted starts the session sweep.
func (h *Hook) OnStarted() {
	h.stop = make(chan struct{})
	h.wg.Add(1)
	go h.sweepLoop()
}

// Stop ends the session sweep.
func (h *Hook) Stop() error {
	if h.stop != nil {
		close(h.stop)
		h.wg.Wait()
		h.stop = nil
	}
	return nil
}

func (h *Hook) sweepLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.SweepEvery)
	defer t.Stop()
	logs := time.NewTicker(refusalLogEvery)
	defer logs.Stop()
	for {
		select {
		case <-h.stop:
			h.refusals.flush(h.Log)
			return
		case <-logs.C:
			h.refusals.flush(h.Log)
		case <-t.C:
			if n := h.sweep(); n > 0 {
				h.Log.Warn("auth: removed sessions of connections closed without a disconnect", "sessions", n)
			}
		}
	}
}

// sweep removes the sessions of connections that were already closed at
// the previous sweep and still are registered: mochi never calls
// OnDisconnect when writing the CONNACK (or resending inflights) fails,
// so nothing else would remove them. Waiting one period leaves a normal
// disconnect, which closes the connection before the hooks' OnDisconnect
// run, all the time it needs: every hook still finds the session there.
// It returns how many it removed.
func (h *Hook) sweep() int {
	closed := h.opts.Sessions.Closed()
	next := make(map[*mqtt.Client]bool, len(closed))
	n := 0
	for _, cl := range closed {
		if !h.suspects[cl] {
			next[cl] = true
			continue
		}
		if h.opts.Sessions.Remove(cl) {
			h.opts.Metrics.Connections.Dec()
			n++
		}
	}
	h.suspects = next
	return n
}

// refusal is why a CONNECT was refused.
type refusal struct {
	code   packets.Code // MQTT 5 reason
	reason string       // metrics label and log text
}

var (
	refBadCreds  = refusal{packets.ErrBadUsernameOrPassword, "bad_credentials"}
	refBadToken  = refusal{packets.ErrNotAuthorized, "bad_token"}
	refClientID  = refusal{packets.ErrNotAuthorized, "client_id"}
	refDisabled  = refusal{packets.ErrNotAuthorized, "disabled"}
	refThrottled = refusal{packets.ErrConnectionRateExceeded, "throttled"}
	refAnonymous = refusal{packets.ErrNotAuthorized, "anonymous"}
	refInternal  = refusal{packets.ErrServerUnavailable, "internal"}
	// refOTP: the right password of a user with two-factor login; such
	// users log devices in with tokens (POST /v1/login). Answered like a
	// wrong password, and not counted as a failed guess.
	refOTP = refusal{packets.ErrBadUsernameOrPassword, "otp_required"}
)

// OnConnect authenticates the CONNECT. On refusal it sends the CONNACK
// with Tern's reason code itself and returns an error, which makes mochi
// drop the connection without a second CONNACK.
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	user := string(pk.Connect.Username)
	if user != "" && !accounts.IsToken(string(pk.Connect.Password)) {
		l := h.pwLock(user)
		l.RLock()
		defer l.RUnlock()
	}
	id, m, ref := h.authenticate(cl, pk)
	if ref == nil {
		ref = h.settlePrevious(cl, id)
	}
	h.audit(cl, user, m, ref)
	if ref == nil {
		h.opts.Sessions.AddVia(cl, id, m)
		h.opts.Metrics.AuthLogins.WithLabelValues(methodNames[m]).Inc()
		return nil
	}
	h.opts.Metrics.AuthFailures.WithLabelValues(ref.reason).Inc()
	h.refusals.refused(h.Log, remoteIP(cl.Net.Remote), ref.reason, "client", clip(cl.ID), "user", clip(user),
		"remote", cl.Net.Remote, "listener", cl.Net.Listener, "reason", ref.reason)
	code := ref.code
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Code{Code: v3Code(code.Code)}
	}
	if err := h.opts.Server.SendConnack(cl, code, false, nil); err != nil {
		h.Log.Debug("send connack", "client", cl.ID, "error", err)
	}
	return ref.code
}

// audit records the outcome of a CONNECT: auth.login, ok with the method
// as reason, or refused with the refusal's reason.
func (h *Hook) audit(cl *mqtt.Client, user string, m session.Method, ref *refusal) {
	e := audit.Entry{Type: audit.AuthLogin, UID: user, IP: remoteIP(cl.Net.Remote), OK: ref == nil, Reason: methodNames[m]}
	if _, did, err := topics.ParseClientID(cl.ID); err == nil {
		e.DID = did
	}
	if ref != nil {
		e.Reason = ref.reason
	}
	h.opts.Audit.Log(e)
}

// takeoverWait bounds how long a connection waits for mochi to release
// the previous connection of its ClientID.
const takeoverWait = 2 * time.Second

// settlePrevious ends the previous connection of cl's ClientID, when its
// session ends with it, and waits until mochi has forgotten it, before
// cl is attached. It works around a race in mochi's takeover: the old
// connection's cleanup (after its read loop ends) checks "taken over?"
// and then deletes the client by ClientID and unsubscribes its filters by
// ClientID; when the new connection attaches in between, the cleanup
// deletes the new client from the client map and its subscriptions, and
// the device is connected but receives nothing (seen in reconnect storms
// as unanswered hellos). Such a session inherits nothing, so waiting
// loses nothing; persistent sessions are never deleted on disconnect and
// keep mochi's own takeover. An anonymous connection never displaces an
// authenticated one.
func (h *Hook) settlePrevious(cl *mqtt.Client, id topics.Identity) *refusal {
	srv := h.opts.Server
	old, ok := srv.Clients.Get(cl.ID)
	if !ok || old == cl {
		return nil
	}
	prev, registered := h.opts.Sessions.Get(old)
	if registered && id.Anonymous && !prev.Anonymous {
		return &refClientID
	}
	if !endsWithConnection(old) {
		return nil
	}
	if old.Closed() && time.Now().Unix()-old.StopTime() > 2 {
		// Closed a while ago and still listed: mochi never cleans up
		// after a failed CONNACK write, so nothing is pending.
		return nil
	}
	if registered {
		if !old.Closed() {
			_ = srv.DisconnectClient(old, packets.ErrSessionTakenOver)
		}
		// The session goes in this hook's OnDisconnect, the last hook
		// mochi calls before its cleanup.
		t := time.NewTimer(takeoverWait)
		defer t.Stop()
		select {
		case <-prev.Gone():
		case <-t.C:
			h.Log.Warn("previous connection not released in time", "client", cl.ID)
			return nil
		}
	}
	// OnDisconnect has run; mochi's cleanup follows at once, but takes
	// the client map's lock, which a storm keeps busy: poll it sparingly.
	deadline := time.Now().Add(takeoverWait)
	for pause := 50 * time.Microsecond; time.Now().Before(deadline); pause = min(2*pause, 10*time.Millisecond) {
		if cur, ok := srv.Clients.Get(cl.ID); !ok || cur != old {
			return nil
		}
		time.Sleep(pause)
	}
	h.Log.Warn("previous connection not released in time", "client", cl.ID)
	return nil
}

// endsWithConnection reports whether cl's session expires when its
// connection ends (mochi's "expire" on disconnect).
func endsWithConnection(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// methodNames are the metric labels of session methods.
var methodNames = [...]string{session.MethodNone: "anonymous", session.MethodPassword: "password", session.MethodToken: "token"}

// authenticate checks the CONNECT's credentials. A well-formed device
// token is always checked and, if valid, always admitted: token failures
// are throttled per address only (a token is a 256-bit secret; guessing
// one is hopeless, and an attacker sharing a NAT must not lock devices
// out). Password logins are throttled per address, per (address, user)
// and per user; see throttle.
func (h *Hook) authenticate(cl *mqtt.Client, pk packets.Packet) (topics.Identity, session.Method, *refusal) {
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	if user == "" && len(pk.Connect.Password) == 0 {
		if h.opts.Anonymous[cl.Net.Listener] {
			return topics.Identity{Anonymous: true}, session.MethodNone, nil
		}
		return topics.Identity{}, session.MethodNone, &refAnonymous
	}
	uid, did, err := topics.ParseClientID(cl.ID)
	if err != nil || uid != user {
		return topics.Identity{}, session.MethodNone, &refClientID
	}
	now := h.opts.Now()
	addr := remoteIP(cl.Net.Remote)
	m := session.MethodPassword
	if accounts.IsToken(pass) {
		m = session.MethodToken
	} else if h.throttle.lockedPassword(uid, addr, now) {
		return topics.Identity{}, m, &refThrottled
	}
	id, err := h.opts.Accounts.Authenticate(uid, did, pass)
	switch {
	case err == nil:
		if m == session.MethodPassword {
			h.throttle.success(uid, addr, now)
		}
		return id, m, nil
	case errors.Is(err, accounts.ErrBadToken):
		locked, started := h.throttle.tokenFailureStarted(addr, now)
		if started {
			h.opts.Audit.Log(audit.Entry{Type: audit.AuthLockout, UID: uid, DID: did, IP: addr, OK: true, Target: "address-tokens"})
		}
		if locked {
			return topics.Identity{}, m, &refThrottled
		}
		return topics.Identity{}, m, &refBadToken
	case errors.Is(err, accounts.ErrBadCredentials):
		for _, k := range h.throttle.failure(uid, addr, now) {
			h.opts.Audit.Log(audit.Entry{Type: audit.AuthLockout, UID: uid, DID: did, IP: addr, OK: true, Target: k})
		}
		return topics.Identity{}, m, &refBadCreds
	case errors.Is(err, accounts.ErrDisabled):
		return topics.Identity{}, m, &refDisabled
	case errors.Is(err, accounts.ErrOTPRequired):
		return topics.Identity{}, m, &refOTP
	default:
		h.Log.Error("authenticate", "user", uid, "error", err)
		return topics.Identity{}, m, &refInternal
	}
}

// OnConnectAuthenticate admits exactly the connections OnConnect accepted.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.opts.Sessions.Get(cl)
	if ok {
		h.opts.Metrics.Connects.Inc()
		h.opts.Metrics.Connections.Inc()
	}
	return ok
}

// OnDisconnect forgets the session. The broker registers this hook last so
// every other hook still sees the session in its own OnDisconnect.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if h.opts.Sessions.Remove(cl) {
		h.opts.Metrics.Connections.Dec()
	}
}

func remoteIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// throttle counts login failures and locks out for exponentially growing
// periods (Lockout doubled per failure past the budget, up to MaxLockout):
//
//   - "a:" per address, password failures for any user, budget 4×max
//     (many devices may share a NAT). A success does not reset it: an
//     attacker's own account must not wipe their record. It is forgotten
//     after MaxLockout without failures.
//   - "p:" per (address, user), budget max; reset by a success of that
//     user from that address.
//   - "u:" per user, from any address, budget 4×max: it takes failures
//     from several addresses (each locked at max for the user) to lock a
//     user. It is reset by a success of that user, and it does not apply
//     to an address from which the user logged in successfully within
//     trustFor, so the owner's usual addresses are never locked out by
//     others.
//   - "t:" per address, bad device tokens, budget 4×max. It only changes
//     the refusal's reason code: a valid token always logs in.
//
// A refused (locked) attempt is not counted. Every password failure cost
// one KDF run (accounts checks anything not shaped like a token as a
// password), so failures cannot be added cheaply.
type throttle struct {
	mu            sync.Mutex
	m             map[string]*failures
	trusted       map[string]time.Time // (address, user) → last success
	max           int
	base, ceiling time.Duration
}

type failures struct {
	n     int
	until time.Time
	last  time.Time
}

const (
	addrFactor = 4
	// trustFor is how long a successful password login exempts its
	// (address, user) pair from the per-user lockout.
	trustFor = 30 * 24 * time.Hour
	// maxThrottled bounds each of the throttle's maps.
	maxThrottled = 100_000
)

func newThrottle(max int, base, ceiling time.Duration) *throttle {
	return &throttle{m: make(map[string]*failures), trusted: make(map[string]time.Time),
		max: max, base: base, ceiling: ceiling}
}

func pair(uid, addr string) string { return addr + "\x00" + uid }

func (t *throttle) isLocked(k string, now time.Time) bool {
	f := t.m[k]
	return f != nil && now.Before(f.until)
}

// lockedPassword reports whether a password login of uid from addr is
// refused without checking it.
func (t *throttle) lockedPassword(uid, addr string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isLocked("a:"+addr, now) || t.isLocked("p:"+pair(uid, addr), now) {
		return true
	}
	if !t.isLocked("u:"+uid, now) {
		return false
	}
	last, ok := t.trusted[pair(uid, addr)]
	return !ok || now.Sub(last) > trustFor
}

// failure counts a wrong password (or unknown user) and returns the
// lockouts it started: "address", "user-address", "user".
func (t *throttle) failure(uid, addr string, now time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.room(now)
	var started []string
	for _, k := range []struct {
		key, name string
		max       int
	}{
		{"a:" + addr, "address", t.max * addrFactor},
		{"p:" + pair(uid, addr), "user-address", t.max},
		{"u:" + uid, "user", t.max * addrFactor},
	} {
		if t.bump(k.key, k.max, now) {
			started = append(started, k.name)
		}
	}
	return started
}

// tokenFailure counts a bad device token and reports whether addr is now
// over its budget.
func (t *throttle) tokenFailure(addr string, now time.Time) bool {
	locked, _ := t.tokenFailureStarted(addr, now)
	return locked
}

// tokenFailureStarted is tokenFailure that also reports whether this
// failure started the address's lockout (for the audit log).
func (t *throttle) tokenFailureStarted(addr string, now time.Time) (locked, started bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.room(now)
	k := "t:" + addr
	started = t.bump(k, t.max*addrFactor, now)
	return t.isLocked(k, now), started
}

// bump counts a failure of k and reports whether it starts a lockout
// (k was not locked before).
func (t *throttle) bump(k string, max int, now time.Time) bool {
	f := t.m[k]
	if f == nil {
		f = new(failures)
		t.m[k] = f
	}
	if now.Sub(f.last) > t.ceiling && !now.Before(f.until) {
		f.n = 0 // quiet for long enough: forgotten
	}
	f.n++
	f.last = now
	if f.n >= max {
		was := now.Before(f.until)
		lock := t.base << min(f.n-max, 30)
		if lock > t.ceiling || lock <= 0 {
			lock = t.ceiling
		}
		f.until = now.Add(lock)
		return !was
	}
	return false
}

// success records a password login of uid from addr: it resets that
// user's counters and trusts the pair; the address's counter stays.
func (t *throttle) success(uid, addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, "u:"+uid)
	delete(t.m, "p:"+pair(uid, addr))
	if len(t.trusted) >= maxThrottled {
		for k, last := range t.trusted {
			if now.Sub(last) > trustFor || len(t.trusted) >= maxThrottled {
				delete(t.trusted, k) // expired, or any while still full
			}
		}
	}
	t.trusted[pair(uid, addr)] = now
}

// room drops entries idle for longer than the ceiling when the map is
// full; it bounds memory under a flood of distinct bad user names.
func (t *throttle) room(now time.Time) {
	if len(t.m) < maxThrottled {
		return
	}
	for k, f := range t.m {
		if now.Sub(f.last) > t.ceiling && now.After(f.until) {
			delete(t.m, k)
		}
	}
	if len(t.m) >= maxThrottled {
		clear(t.m) // all recent: a flood; start over rather than grow
	}
}

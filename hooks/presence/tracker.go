package presence

import (
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// Store is what presence needs from storage: the last published presence
// of each user, which is also what presence.get answers.
type Store interface {
	// Presence returns the stored presence of uid, or an error wrapping
	// im.ErrNotFound for a user never seen.
	Presence(uid string) (im.Presence, error)
	// PutPresence stores the presence of uid; it must be durable (as the
	// store is configured) when it returns.
	PutPresence(uid string, p im.Presence) error
	// PutPresences stores many at once.
	PutPresences(ps map[string]im.Presence) error
	// RangePresence calls fn for every stored presence until fn fails.
	RangePresence(fn func(uid string, p im.Presence) error) error
}

// numShards spreads users over independently locked maps. One shard's
// lock serialises every presence write of its users.
const numShards = 64

// retryAfter is when a publication that failed to persist is tried again
// if nothing else happens first.
const retryAfter = time.Second

// tracker is the per-user presence state machine, independent of mochi so
// its timers can be tested under testing/synctest. Every method is safe
// for concurrent use; all work for one uid happens under its shard lock,
// so writes for one user are serialised and pv is published in order.
type tracker struct {
	store    Store
	publish  func(uid string, payload []byte) error
	now      func() time.Time
	grace    time.Duration
	coalesce time.Duration
	log      *slog.Logger
	// changed, if set, is told of every live publication (not the
	// rebuild's), under the user's shard lock: it must not block.
	changed func(uid string, p im.Presence)
	// conns, in cluster mode, is the cluster's connection registry, in
	// which this node (named node) records its devices; nil on a single
	// node. Then a user's devices are this node's and the other nodes'
	// in the registry, the stored presence is reread before each change
	// (another node may have written it), and what is stored is
	// published by the store's watch on every node, not here.
	conns im.Connections
	node  string
	// stored is told of every presence this node stored (cluster mode),
	// under the user's shard lock: it must not block.
	stored func(uid string, p im.Presence)

	// gate lets Stop wait for events and timer callbacks in progress and
	// turn away later ones.
	gate    sync.RWMutex
	stopped bool

	shards [numShards]shard
}

// device is the current connection of one device.
type device struct {
	gen uint64
}

type shard struct {
	mu    sync.Mutex
	users map[string]*user
}

// user is one user's state. Users with nothing pending are evicted; the
// store holds what is needed to pick up again.
type user struct {
	devs   map[string]device // by did: its current connection
	mode   string            // on, away or busy, as the devices last said
	tx     string
	loaded bool        // pub came from the store (or the user is new)
	pub    im.Presence // last published, as stored
	last   time.Time   // when pub was published
	left   time.Time   // when the last device went
	// offline: no device and the grace period is over (or never began).
	offline bool
	grace   *time.Timer
	flush   *time.Timer
	seq     uint64    // identifies the current grace timer
	since   time.Time // when the state first differed from pub
	// elsewhere are the user's devices on other nodes (cluster mode), as
	// the registry said when this event began.
	elsewhere []string
	// leaving is the registry entry of the last device to go here, kept
	// through the grace period (cluster mode): the other nodes count the
	// user online meanwhile, and drop it if this node dies before the
	// grace period ends.
	leaving *im.Conn
}

// trackerOptions configure a tracker.
type trackerOptions struct {
	store Store
	// publish sends one user's presence payload.
	publish         func(uid string, payload []byte) error
	now             func() time.Time
	grace, coalesce time.Duration
	log             *slog.Logger
	conns           im.Connections
	node            string
}

func newTracker(o trackerOptions) *tracker {
	t := &tracker{store: o.store, publish: o.publish, now: o.now, grace: o.grace, coalesce: o.coalesce, log: o.log,
		conns: o.conns, node: o.node}
	for i := range t.shards {
		t.shards[i].users = make(map[string]*user)
	}
	return t
}

func (t *tracker) shard(uid string) *shard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(uid); i++ {
		h = (h ^ uint32(uid[i])) * 16777619
	}
	return &t.shards[h%numShards]
}

// do runs fn with uid's state under its shard lock, then publishes what
// changed and evicts the state if nothing is pending. It does nothing
// once the tracker is stopped.
func (t *tracker) do(uid string, fn func(u *user)) {
	t.gate.RLock()
	defer t.gate.RUnlock()
	if t.stopped {
		return
	}
	sh := t.shard(uid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.users[uid]
	if u == nil {
		u = &user{devs: map[string]device{}, mode: On, offline: true}
		t.load(uid, u)
		if t.conns != nil {
			// Online as stored: the node that saw the last device go
			// (or, if it died, a survivor) takes the user off.
			u.offline = u.pub.S == Off || u.pub.PV == 0
		}
		sh.users[uid] = u
	} else if t.conns != nil && u.flush == nil {
		t.load(uid, u) // another node may have written since
	}
	if t.conns != nil {
		t.clusterView(uid, u)
	}
	fn(u)
	t.sync(uid, u)
	if (u.offline || t.conns != nil) && len(u.devs) == 0 && u.grace == nil && u.flush == nil {
		delete(sh.users, uid)
	}
}

// clusterView refreshes what other nodes decide about u: its devices
// there, and (unless a change of this node's is still to be published)
// the status they published.
func (t *tracker) clusterView(uid string, u *user) {
	cs, err := t.conns.Conns(uid)
	if err != nil {
		t.log.Error("presence: connections", "user", uid, "error", err)
	} else {
		u.elsewhere = u.elsewhere[:0]
		for _, c := range cs {
			if c.Node != t.node {
				u.elsewhere = append(u.elsewhere, c.DID)
			}
		}
	}
	if u.flush == nil && u.loaded {
		u.mode = On
		if u.pub.S == Away || u.pub.S == Busy {
			u.mode = u.pub.S
		}
	}
}

// count is how many devices of u are connected: here, and elsewhere in
// cluster mode (a device that just moved here is counted once).
func (t *tracker) count(u *user) int {
	n := len(u.devs)
	for _, did := range u.elsewhere {
		if _, here := u.devs[did]; !here {
			n++
		}
	}
	return n
}

func (t *tracker) load(uid string, u *user) {
	p, err := t.store.Presence(uid)
	switch {
	case err == nil:
		u.pub, u.tx, u.loaded = p, p.TX, true
	case errors.Is(err, im.ErrNotFound):
		u.loaded = true
	default:
		t.log.Error("presence: load", "user", uid, "error", err)
	}
}

// up records that device did connected with generation gen.
func (t *tracker) up(uid, did string, gen uint64) {
	t.do(uid, func(u *user) {
		if cur, ok := u.devs[did]; ok && cur.gen > gen {
			return // an older connection, late
		}
		t.add(uid, u, did, device{gen})
	})
}

// down records that the connection gen of device did has gone. It changes
// nothing unless gen is the device's current connection.
func (t *tracker) down(uid, did string, gen uint64) {
	t.do(uid, func(u *user) { t.remove(uid, u, did, gen) })
}

// apply runs a presence command from connection gen of device did. live
// is false for a fired will, which only counts from the device's current
// connection; a live connection that had said off comes back with any
// other status.
func (t *tracker) apply(uid, did string, gen uint64, o op, live bool) {
	t.do(uid, func(u *user) {
		cur, ok := u.devs[did]
		switch {
		case ok && cur.gen != gen && (cur.gen > gen || !live):
			return // a late command of an older connection
		case !ok && (!live || o.S == Off):
			return // the device has already gone
		}
		if o.HasTX {
			u.tx = o.TX
		}
		switch o.S {
		case Off:
			t.remove(uid, u, did, gen)
			return
		case On, Away, Busy:
			u.mode = o.S
		}
		if !ok || cur.gen != gen {
			t.add(uid, u, did, device{gen})
		}
	})
}

func (t *tracker) add(uid string, u *user, did string, d device) {
	u.devs[did] = d
	t.register(im.Conn{UID: uid, DID: did, Node: t.node, Gen: d.gen})
	if l := u.leaving; l != nil {
		u.leaving = nil
		if l.DID != did { // the same device's entry was just replaced
			t.unregister(*l)
		}
	}
	u.offline = false
	if u.grace != nil {
		u.grace.Stop()
		u.grace = nil
	}
}

func (t *tracker) remove(uid string, u *user, did string, gen uint64) {
	if cur, ok := u.devs[did]; !ok || cur.gen != gen {
		return
	}
	delete(u.devs, did)
	c := im.Conn{UID: uid, DID: did, Node: t.node, Gen: gen}
	switch {
	case t.count(u) > 0:
		t.unregister(c)
		return
	case t.conns != nil && t.grace > 0:
		u.leaving = &c // until the grace period ends
	default:
		t.unregister(c)
	}
	t.lastGone(uid, u)
}

// register records a connection in the cluster's registry.
func (t *tracker) register(c im.Conn) {
	if t.conns == nil {
		return
	}
	if err := t.conns.Connect(c); err != nil {
		// A store that does not wait for a leader election at connect
		// (jetstore) fails now: record it again later, if the device
		// is still connected.
		t.log.Warn("presence: register connection", "user", c.UID, "error", err)
		time.AfterFunc(retryAfter, func() {
			t.do(c.UID, func(u *user) {
				if d, ok := u.devs[c.DID]; ok && d.gen == c.Gen {
					t.register(c)
				}
			})
		})
	}
}

// rejoin records every device connected here in the registry again (the
// other nodes dropped them, taking this node as gone) and re-checks
// their users' presence.
func (t *tracker) rejoin() int {
	var uids []string
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for uid, u := range sh.users {
			if len(u.devs) > 0 {
				uids = append(uids, uid)
			}
		}
		sh.mu.Unlock()
	}
	for _, uid := range uids {
		t.do(uid, func(u *user) {
			cs, err := t.conns.Conns(uid)
			if err != nil {
				t.log.Error("presence: connections", "user", uid, "error", err)
				return
			}
			// Only what was dropped: a device whose entry is another
			// node's has connected there since.
			listed := func(did string) bool {
				return slices.ContainsFunc(cs, func(c im.Conn) bool { return c.DID == did })
			}
			for did, d := range u.devs {
				if !listed(did) {
					t.register(im.Conn{UID: uid, DID: did, Node: t.node, Gen: d.gen})
				}
			}
			if l := u.leaving; l != nil && !listed(l.DID) {
				t.register(*l)
			}
		})
	}
	// Right after a partition heals, this node's reads may still come
	// from its own replica, which lacks what the others stored meanwhile
	// (an off for these users): the check above then finds nothing to
	// change. Check again once reads reach a leader.
	time.AfterFunc(retryAfter, func() {
		for _, uid := range uids {
			t.do(uid, func(*user) {})
		}
	})
	return len(uids)
}

// unregister removes a connection from the cluster's registry.
func (t *tracker) unregister(c im.Conn) {
	if t.conns == nil {
		return
	}
	if err := t.conns.Disconnect(c); err != nil {
		t.log.Error("presence: unregister connection", "user", c.UID, "error", err)
	}
}

// lastGone starts the grace period of a user whose last device went.
func (t *tracker) lastGone(uid string, u *user) {
	u.left = t.now()
	if t.grace <= 0 {
		t.goOffline(u)
		return
	}
	u.seq++
	seq := u.seq
	u.grace = time.AfterFunc(t.grace, func() { t.graceOver(uid, seq) })
}

func (t *tracker) goOffline(u *user) {
	u.offline = true
	u.mode = On // away and busy end with the last device; tx stays
}

// graceOver re-checks a user whose last device went a grace period ago.
func (t *tracker) graceOver(uid string, seq uint64) {
	t.do(uid, func(u *user) {
		if u.grace == nil || u.seq != seq {
			return // a device came back, or a newer grace timer runs
		}
		u.grace = nil
		if l := u.leaving; l != nil {
			u.leaving = nil
			t.unregister(*l)
		}
		if t.count(u) == 0 {
			t.goOffline(u)
		}
	})
}

// want is the presence u should have published; ok is false while
// nothing is to be published (the grace period).
func (t *tracker) want(u *user, now time.Time) (p im.Presence, ok bool) {
	switch {
	case t.count(u) > 0:
		return im.Presence{S: u.mode, LS: now.UnixMilli(), D: t.count(u), TX: u.tx}, true
	case u.offline && u.pub.PV > 0:
		ls := u.pub.LS
		if !u.left.IsZero() {
			ls = u.left.UnixMilli()
		}
		return im.Presence{S: Off, LS: ls, TX: u.tx}, true
	}
	return p, false
}

// sync publishes u's presence if it differs from the last publication,
// at most once per coalescing window: a change inside the window is
// published when it ends, as the state is then. A change of the device
// count alone always waits one window, so devices reconnecting together
// (a network blip, a broker-side cut) usually publish nothing at all.
func (t *tracker) sync(uid string, u *user) {
	now := t.now()
	p, ok := t.want(u, now)
	same := p.S == u.pub.S && p.TX == u.pub.TX && u.pub.PV > 0
	if !ok || same && p.D == u.pub.D {
		u.since = time.Time{}
		return
	}
	if u.since.IsZero() {
		u.since = now
	}
	if u.flush != nil {
		return // the pending flush publishes the state as it is then
	}
	var wait time.Duration
	if !u.last.IsZero() {
		wait = u.last.Add(t.coalesce).Sub(now)
	}
	if same {
		wait = max(wait, u.since.Add(t.coalesce).Sub(now))
	}
	if wait > 0 {
		u.flush = time.AfterFunc(wait, func() { t.flushed(uid) })
		return
	}
	if !u.loaded {
		if t.load(uid, u); !u.loaded {
			u.flush = time.AfterFunc(retryAfter, func() { t.flushed(uid) })
			return
		}
	}
	p.PV = u.pub.PV + 1
	err := t.store.PutPresence(uid, p)
	for try := 0; errors.Is(err, im.ErrStale) && try < 3; try++ {
		// Another node wrote this user's presence since it was read
		// (cluster mode): go on from what it wrote.
		if !t.reload(uid, u) {
			break
		}
		if p.S == u.pub.S && p.TX == u.pub.TX && p.D == u.pub.D {
			u.since = time.Time{}
			return // it published what this node would
		}
		p.PV = u.pub.PV + 1
		err = t.store.PutPresence(uid, p)
	}
	if err != nil {
		t.log.Error("presence: store", "user", uid, "error", err)
		u.flush = time.AfterFunc(retryAfter, func() { t.flushed(uid) })
		return
	}
	u.pub, u.last, u.since = p, now, time.Time{}
	if t.conns != nil {
		t.log.Debug("presence stored", "user", uid, "s", p.S, "pv", p.PV, "d", p.D)
		if t.stored != nil {
			t.stored(uid, p)
		}
		return // every node publishes what is stored
	}
	payload, err := json.Marshal(p)
	if err == nil {
		err = t.publish(uid, payload)
	}
	if err != nil {
		t.log.Error("presence: publish", "user", uid, "error", err)
	}
	if t.changed != nil {
		t.changed(uid, p)
	}
}

func (t *tracker) flushed(uid string) {
	t.do(uid, func(u *user) { u.flush = nil })
}

// reload rereads the stored presence of uid into u.pub only.
func (t *tracker) reload(uid string, u *user) bool {
	p, err := t.store.Presence(uid)
	if err != nil {
		t.log.Error("presence: load", "user", uid, "error", err)
		return false
	}
	u.pub = p
	return true
}

// lost re-checks a user some of whose devices were connected to a node
// that is gone (cluster mode): its registry entries were dropped. With
// no device left anywhere, the grace period starts here.
func (t *tracker) lost(uid string) {
	t.do(uid, func(u *user) {
		if t.count(u) > 0 || u.grace != nil || u.pub.PV == 0 || u.pub.S == Off {
			return // still online (sync publishes the new count), or already going
		}
		u.offline = false
		t.lastGone(uid, u)
	})
}

// rebuild publishes every stored presence as off, keeping ls: after a
// restart nobody is connected. Records not already off get a new pv.
func (t *tracker) rebuild() (int, error) {
	const batch = 1024
	changed := make(map[string]im.Presence, batch)
	var all []string
	var payloads [][]byte
	flush := func() error {
		if len(changed) > 0 {
			if err := t.store.PutPresences(changed); err != nil {
				return err
			}
			clear(changed)
		}
		for i, uid := range all {
			if err := t.publish(uid, payloads[i]); err != nil {
				return err
			}
		}
		all, payloads = all[:0], payloads[:0]
		return nil
	}
	n := 0
	err := t.store.RangePresence(func(uid string, p im.Presence) error {
		if p.S != Off || p.D != 0 {
			p.S, p.D = Off, 0
			p.PV++
			changed[uid] = p
		}
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		all, payloads = append(all, uid), append(payloads, b)
		n++
		if len(all) == batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return n, err
}

// stop cancels every timer and turns away later events. Users still
// online get their last-seen time stored as now, for the rebuild at the
// next start; nothing more is published.
func (t *tracker) stop() error {
	t.gate.Lock()
	defer t.gate.Unlock()
	if t.stopped {
		return nil
	}
	t.stopped = true
	if t.conns != nil {
		return t.stopCluster()
	}
	now := t.now().UnixMilli() // last seen of the users still connected
	seen := map[string]im.Presence{}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for uid, u := range sh.users {
			if u.grace != nil {
				u.grace.Stop()
			}
			if u.flush != nil {
				u.flush.Stop()
			}
			if u.pub.PV > 0 && u.pub.S != Off {
				p := u.pub
				p.LS = now
				if len(u.devs) == 0 && !u.left.IsZero() {
					p.LS = u.left.UnixMilli()
				}
				seen[uid] = p
			}
		}
		clear(sh.users)
		sh.mu.Unlock()
	}
	if len(seen) == 0 {
		return nil
	}
	return t.store.PutPresences(seen)
}

// stopCluster cancels every timer (cluster mode, under the gate). What is
// stored belongs to the cluster: devices still connected here leave
// through the registry, or the other nodes drop them when this node goes
// silent. Users whose grace period was running here, with no device
// anywhere, would have no node left to take them off: they go off now.
func (t *tracker) stopCluster() error {
	var errs []error
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for uid, u := range sh.users {
			if u.flush != nil {
				u.flush.Stop()
			}
			if u.grace == nil {
				continue
			}
			u.grace.Stop()
			if l := u.leaving; l != nil {
				u.leaving = nil
				t.unregister(*l)
			}
			if len(u.devs) > 0 || u.pub.PV == 0 || u.pub.S == Off {
				continue
			}
			if cs, err := t.conns.Conns(uid); err != nil || len(cs) > 0 {
				continue // a device came back elsewhere (or unknown: leave it)
			}
			p := im.Presence{S: Off, LS: u.left.UnixMilli(), TX: u.tx, PV: u.pub.PV + 1}
			if err := t.store.PutPresence(uid, p); err != nil && !errors.Is(err, im.ErrStale) {
				errs = append(errs, err)
			}
		}
		clear(sh.users)
		sh.mu.Unlock()
	}
	return errors.Join(errs...)
}

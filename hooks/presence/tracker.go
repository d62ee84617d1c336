package presence

import (
	"encoding/json"
	"errors"
	"log/slog"
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
}

// trackerOptions configure a tracker.
type trackerOptions struct {
	store Store
	// publish sends one user's presence payload.
	publish         func(uid string, payload []byte) error
	now             func() time.Time
	grace, coalesce time.Duration
	log             *slog.Logger
}

func newTracker(o trackerOptions) *tracker {
	t := &tracker{store: o.store, publish: o.publish, now: o.now, grace: o.grace, coalesce: o.coalesce, log: o.log}
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
		sh.users[uid] = u
	}
	fn(u)
	t.sync(uid, u)
	if u.offline && len(u.devs) == 0 && u.grace == nil && u.flush == nil {
		delete(sh.users, uid)
	}
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
		t.add(u, did, device{gen})
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
			t.add(u, did, device{gen})
		}
	})
}

func (t *tracker) add(u *user, did string, d device) {
	u.devs[did] = d
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
	if len(u.devs) > 0 {
		return
	}
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
		if len(u.devs) == 0 {
			t.goOffline(u)
		}
	})
}

// want is the presence u should have published; ok is false while
// nothing is to be published (the grace period).
func (t *tracker) want(u *user, now time.Time) (p im.Presence, ok bool) {
	switch {
	case len(u.devs) > 0:
		return im.Presence{S: u.mode, LS: now.UnixMilli(), D: len(u.devs), TX: u.tx}, true
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
	if err := t.store.PutPresence(uid, p); err != nil {
		t.log.Error("presence: store", "user", uid, "error", err)
		u.flush = time.AfterFunc(retryAfter, func() { t.flushed(uid) })
		return
	}
	u.pub, u.last, u.since = p, now, time.Time{}
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

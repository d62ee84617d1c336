package presence

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// memStore is an in-memory Store.
type memStore struct {
	mu   sync.Mutex
	m    map[string]im.Presence
	fail bool // PutPresence fails
}

var errDisk = errors.New("disk on fire")

func (s *memStore) Presence(uid string) (im.Presence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[uid]
	if !ok {
		return p, im.ErrNotFound
	}
	return p, nil
}

func (s *memStore) PutPresence(uid string, p im.Presence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errDisk
	}
	s.m[uid] = p
	return nil
}

func (s *memStore) PutPresences(ps map[string]im.Presence) error {
	for uid, p := range ps {
		if err := s.PutPresence(uid, p); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) RangePresence(fn func(string, im.Presence) error) error {
	s.mu.Lock()
	m := make(map[string]im.Presence, len(s.m))
	for k, v := range s.m {
		m[k] = v
	}
	s.mu.Unlock()
	for uid, p := range m {
		if err := fn(uid, p); err != nil {
			return err
		}
	}
	return nil
}

// pub is one recorded publication.
type pub struct {
	uid string
	p   im.Presence
	at  time.Time
}

// rig is a tracker with an in-memory store and recorded publications.
type rig struct {
	t     *testing.T
	st    *memStore
	tr    *tracker
	mu    sync.Mutex
	pubs  []pub
	start time.Time
}

const (
	testGrace    = 10 * time.Second
	testCoalesce = 2 * time.Second
)

func newRig(t *testing.T, st *memStore) *rig {
	if st == nil {
		st = &memStore{m: map[string]im.Presence{}}
	}
	r := &rig{t: t, st: st, start: time.Now()}
	r.tr = newTracker(trackerOptions{
		store: st, publish: r.publish, now: time.Now, grace: testGrace, coalesce: testCoalesce,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return r
}

func (r *rig) publish(uid string, payload []byte) error {
	var p im.Presence
	if err := json.Unmarshal(payload, &p); err != nil {
		r.t.Errorf("payload %q: %v", payload, err)
	}
	// Persisted before published.
	if got, err := r.st.Presence(uid); err != nil || got != p {
		r.t.Errorf("published %+v but stored %+v, %v", p, got, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.pubs); n > 0 {
		for i := n - 1; i >= 0; i-- {
			if r.pubs[i].uid == uid && r.pubs[i].p.PV >= p.PV {
				r.t.Errorf("pv went from %d to %d", r.pubs[i].p.PV, p.PV)
			}
		}
	}
	r.pubs = append(r.pubs, pub{uid, p, time.Now()})
	return nil
}

// take returns and forgets the publications so far.
func (r *rig) take() []pub {
	synctest.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pubs
	r.pubs = nil
	return out
}

// expect checks the publications since the last take by status and
// device count.
func (r *rig) expect(want ...string) []pub {
	r.t.Helper()
	got := r.take()
	var g []string
	for _, p := range got {
		g = append(g, fmt.Sprintf("%s:%s/%d", p.uid, p.p.S, p.p.D))
	}
	if fmt.Sprint(g) != fmt.Sprint(want) {
		r.t.Fatalf("at +%v published %v, want %v", time.Since(r.start), g, want)
	}
	return got
}

func TestTrackerConnectDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		got := r.expect("alice:on/1")
		if got[0].p.PV != 1 || got[0].p.LS != r.start.UnixMilli() {
			t.Fatalf("first publication %+v", got[0].p)
		}
		time.Sleep(5 * time.Second)
		left := time.Now()
		r.tr.down("alice", "p1", 1)
		time.Sleep(testGrace - time.Millisecond)
		r.expect() // nothing inside the grace period
		time.Sleep(time.Millisecond)
		got = r.expect("alice:off/0")
		if p := got[0].p; p.PV != 2 || p.LS != left.UnixMilli() || !got[0].at.Equal(left.Add(testGrace)) {
			t.Fatalf("off %+v at +%v", p, got[0].at.Sub(r.start))
		}
		// A late disconnect of the same connection changes nothing.
		r.tr.down("alice", "p1", 1)
		time.Sleep(time.Minute)
		r.expect()
	})
}

func TestTrackerGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		r.expect("alice:on/1")
		// Back within the grace period, on a new connection: nothing to say.
		r.tr.down("alice", "p1", 1)
		time.Sleep(testGrace / 2)
		r.tr.up("alice", "p1", 2)
		time.Sleep(time.Minute)
		r.expect()
		// Two short absences: the second grace period counts from its own start.
		r.tr.down("alice", "p1", 2)
		time.Sleep(testGrace / 2)
		r.tr.up("alice", "p1", 3)
		time.Sleep(time.Second)
		r.tr.down("alice", "p1", 3)
		time.Sleep(testGrace - time.Second)
		r.expect()
		time.Sleep(time.Second)
		r.expect("alice:off/0")
	})
}

func TestTrackerTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		r.expect("alice:on/1")
		// Same ClientID again while gen 1 is half-open: gen 2 is counted
		// first, then gen 1's will and disconnect arrive.
		r.tr.up("alice", "p1", 2)
		r.tr.apply("alice", "p1", 1, op{S: Off}, false)
		r.tr.down("alice", "p1", 1)
		// A late up of the old generation is ignored too.
		r.tr.up("alice", "p1", 1)
		time.Sleep(time.Minute)
		r.expect()
		r.tr.down("alice", "p1", 2)
		time.Sleep(testGrace)
		r.expect("alice:off/0")
	})
}

func TestTrackerTwoDevices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		r.tr.up("alice", "p2", 2)
		r.expect("alice:on/1") // d:2 waits for the coalescing window
		time.Sleep(testCoalesce)
		r.expect("alice:on/2")
		r.tr.down("alice", "p1", 1)
		r.expect()
		time.Sleep(testCoalesce)
		r.expect("alice:on/1")
		time.Sleep(time.Minute)
		r.expect()
		r.tr.down("alice", "p2", 2)
		time.Sleep(testGrace)
		r.expect("alice:off/0")
	})
}

func TestTrackerStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		r.tr.up("alice", "p2", 2)
		r.expect("alice:on/1")
		time.Sleep(testCoalesce)
		r.expect("alice:on/2")
		time.Sleep(testCoalesce)
		r.tr.apply("alice", "p1", 1, op{S: Away, TX: "lunch", HasTX: true}, true)
		got := r.expect("alice:away/2")
		if got[0].p.TX != "lunch" {
			t.Fatalf("tx %q", got[0].p.TX)
		}
		time.Sleep(testCoalesce)
		r.tr.apply("alice", "p2", 2, op{S: Busy}, true)
		if got = r.expect("alice:busy/2"); got[0].p.TX != "lunch" {
			t.Fatalf("tx %q after s only", got[0].p.TX)
		}
		// "off" from a device: that device has gone, not the user.
		time.Sleep(testCoalesce)
		r.tr.apply("alice", "p1", 1, op{S: Off}, true)
		r.expect() // a change of the device count alone waits a window
		time.Sleep(testCoalesce)
		r.expect("alice:busy/1")
		// A will of a connection that already said off changes nothing;
		// the same live connection saying on again is back.
		r.tr.apply("alice", "p1", 1, op{S: Off}, false)
		time.Sleep(testCoalesce)
		r.expect()
		r.tr.apply("alice", "p1", 1, op{S: On}, true)
		r.expect("alice:on/2")
		// Clearing the text.
		time.Sleep(testCoalesce)
		r.tr.apply("alice", "p2", 2, op{HasTX: true}, true)
		if got = r.expect("alice:on/2"); got[0].p.TX != "" {
			t.Fatalf("tx %q after clearing", got[0].p.TX)
		}
		// Away ends with the last device; the text stays.
		r.tr.apply("alice", "p2", 2, op{S: Away, TX: "bbl", HasTX: true}, true)
		time.Sleep(testCoalesce)
		r.expect("alice:away/2")
		r.tr.down("alice", "p1", 1)
		r.tr.down("alice", "p2", 2)
		time.Sleep(testGrace)
		if got = r.expect("alice:off/0"); got[0].p.TX != "bbl" {
			t.Fatalf("off tx %q", got[0].p.TX)
		}
		r.tr.up("alice", "p1", 3)
		if got = r.expect("alice:on/1"); got[0].p.TX != "bbl" {
			t.Fatalf("tx %q after coming back", got[0].p.TX)
		}
	})
}

func TestTrackerWill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		r.expect("alice:on/1")
		r.tr.apply("alice", "p1", 1, op{S: Off}, false) // the will fires first
		r.tr.down("alice", "p1", 1)                     // then the disconnect
		time.Sleep(testGrace)
		r.expect("alice:off/0")
	})
}

// TestTrackerFlapping: a device reconnecting every 300 ms next to a
// steady one for a minute gives at most one publication per window.
func TestTrackerFlapping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "steady", 1)
		gen := uint64(2)
		end := time.Now().Add(time.Minute)
		for time.Now().Before(end) {
			r.tr.up("alice", "flappy", gen)
			time.Sleep(150 * time.Millisecond)
			r.tr.down("alice", "flappy", gen)
			time.Sleep(150 * time.Millisecond)
			gen++
		}
		time.Sleep(testCoalesce)
		got := r.take()
		if max := int(time.Minute/testCoalesce) + 2; len(got) > max {
			t.Fatalf("%d publications in a minute of flapping, want <= %d", len(got), max)
		}
		for i := 1; i < len(got); i++ {
			if gap := got[i].at.Sub(got[i-1].at); gap < testCoalesce {
				t.Fatalf("publications %d and %d only %v apart", i-1, i, gap)
			}
		}
		if last := got[len(got)-1].p; last.S != On || last.D != 1 {
			t.Fatalf("settled at %+v, want on/1", last)
		}
		t.Logf("%d device reconnects → %d publications", gen-2, len(got))
	})
}

func TestTrackerRebuildAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		r.tr.up("bob", "p1", 2)
		r.tr.up("carol", "p1", 3)
		r.tr.down("carol", "p1", 3)
		r.expect("alice:on/1", "bob:on/1", "carol:on/1")
		time.Sleep(testGrace)
		r.expect("carol:off/0")
		time.Sleep(time.Hour)
		r.tr.down("bob", "p1", 2) // bob's grace period is still running at stop
		bobLeft := time.Now()
		time.Sleep(time.Second)
		stopped := time.Now()
		if err := r.tr.stop(); err != nil {
			t.Fatal(err)
		}
		// After stop nothing more happens.
		r.tr.down("alice", "p1", 1)
		time.Sleep(time.Minute)
		r.expect()

		// The next run publishes everyone off, keeping last seen.
		before := map[string]im.Presence{}
		for _, uid := range []string{"alice", "bob", "carol"} {
			before[uid], _ = r.st.Presence(uid)
		}
		r2 := newRig(t, r.st)
		n, err := r2.tr.rebuild()
		if err != nil || n != 3 {
			t.Fatalf("rebuild = %d, %v", n, err)
		}
		got := r2.take()
		if len(got) != 3 {
			t.Fatalf("rebuild published %d", len(got))
		}
		wantLS := map[string]int64{"alice": stopped.UnixMilli(), "bob": bobLeft.UnixMilli(), "carol": before["carol"].LS}
		for _, g := range got {
			b := before[g.uid]
			wantPV := b.PV + 1
			if g.uid == "carol" {
				wantPV = b.PV // already off: republished as is
			}
			if g.p.S != Off || g.p.D != 0 || g.p.PV != wantPV || g.p.LS != wantLS[g.uid] {
				t.Errorf("%s rebuilt as %+v (before %+v), want ls %d", g.uid, g.p, b, wantLS[g.uid])
			}
		}
		// And carries on from the stored pv.
		r2.tr.up("alice", "p1", 9)
		if got := r2.expect("alice:on/1"); got[0].p.PV != before["alice"].PV+2 {
			t.Fatalf("pv after restart %d", got[0].p.PV)
		}
		if err := r2.tr.stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTrackerStoreFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.st.fail = true
		r.tr.up("alice", "p1", 1)
		time.Sleep(3 * retryAfter)
		r.expect() // never published unpersisted
		r.st.mu.Lock()
		r.st.fail = false
		r.st.mu.Unlock()
		time.Sleep(retryAfter)
		if got := r.expect("alice:on/1"); got[0].p.PV != 1 {
			t.Fatalf("pv %d", got[0].p.PV)
		}
		if err := r.tr.stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTrackerBlip: every device of a user drops and reconnects within a
// window (a network blip, a cut on the broker side): nothing is published.
func TestTrackerBlip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.tr.up("alice", "p1", 1)
		r.tr.up("alice", "p2", 2)
		time.Sleep(time.Minute)
		r.expect("alice:on/1", "alice:on/2")
		r.tr.down("alice", "p1", 1)
		time.Sleep(100 * time.Millisecond)
		r.tr.down("alice", "p2", 2)
		time.Sleep(500 * time.Millisecond)
		r.tr.up("alice", "p2", 3)
		time.Sleep(100 * time.Millisecond)
		r.tr.up("alice", "p1", 4)
		time.Sleep(time.Minute)
		r.expect()
	})
}

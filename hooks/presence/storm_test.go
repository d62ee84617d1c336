//go:build storm

package presence_test

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/hooks/presence"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/internal/store"
	"github.com/tern-im/tern/topics"
)

// stormRig drives the presence hook of a real mochi server over a real
// Badger store with the events mochi produces for many devices at once;
// the TCP and auth cost of a reconnect is not presence's and is left out.
type stormRig struct {
	t        *testing.T
	srv      *mqtt.Server
	hook     *presence.Hook
	sessions *session.Registry
	pubs     atomic.Int64
	devs     []*mqtt.Client // current connection of each device
}

func newStormRig(t *testing.T, devices int, grace, coalesce time.Duration) *stormRig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(t.TempDir(), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r := &stormRig{t: t, sessions: session.NewRegistry(0), hook: new(presence.Hook)}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 64 // as the broker sets it: mochi allocates the queue up front
	r.srv = mqtt.New(&mqtt.Options{InlineClient: true, Logger: log, Capabilities: caps})
	if err := r.srv.AddHook(r.hook, &presence.Options{
		Server: r.srv, Sessions: r.sessions, Store: st, Grace: grace, Coalesce: coalesce,
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Subscribe("im/p/+", 1, func(*mqtt.Client, packets.Subscription, packets.Packet) {
		r.pubs.Add(1)
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.hook.Stop(); err != nil {
			t.Error(err)
		}
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	r.devs = make([]*mqtt.Client, devices)
	r.each(func(i int) { r.connect(i) })
	return r
}

// device i is user u{i/2}, device d{i%2}: two devices per user.
func ident(i int) topics.Identity {
	return topics.Identity{UID: "u" + strconv.Itoa(i/2), DID: "d" + strconv.Itoa(i%2)}
}

// connect gives device i a new connection, as mochi would.
func (r *stormRig) connect(i int) {
	id := ident(i)
	cl := r.srv.NewClient(nil, "t", topics.ClientID(id.UID, id.DID), false)
	r.sessions.Add(cl, id)
	r.hook.OnSessionEstablish(cl, packets.Packet{})
	r.devs[i] = cl
}

func (r *stormRig) disconnect(cl *mqtt.Client) {
	r.hook.OnDisconnect(cl, io.EOF, true)
	r.sessions.Remove(cl)
}

// each runs fn for every device on all CPUs.
func (r *stormRig) each(fn func(i int)) {
	var wg sync.WaitGroup
	n := runtime.GOMAXPROCS(0)
	for w := range n {
		wg.Go(func() {
			for i := w; i < len(r.devs); i += n {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// TestReconnectStorm measures what a reconnect storm of every device
// costs in presence publications (one Badger write each). It runs with
// -tags storm (scripts/storm.sh). The default size keeps it quick;
// TERN_STORM_DEVICES=10000 gives the numbers in docs/bench.md.
func TestReconnectStorm(t *testing.T) {
	t.Parallel()
	devices := 1000
	if v := os.Getenv("TERN_STORM_DEVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("TERN_STORM_DEVICES=%q", v)
		}
		devices = n &^ 1
	}
	users := devices / 2
	const (
		grace    = time.Second
		coalesce = 500 * time.Millisecond
	)
	settle := func(r *stormRig, d time.Duration) int64 {
		time.Sleep(d)
		return r.pubs.Load()
	}
	type result struct {
		name          string
		events        int
		took          time.Duration
		pubs, perUser float64
	}
	var results []result
	report := func(name string, events int, took time.Duration, pubs int64) {
		results = append(results, result{name, events, took, float64(pubs), float64(pubs) / float64(users)})
	}

	t.Run("cut, back within grace", func(t *testing.T) {
		r := newStormRig(t, devices, grace, coalesce)
		base := settle(r, coalesce+100*time.Millisecond)
		t0 := time.Now()
		r.each(func(i int) { r.disconnect(r.devs[i]) })
		r.each(func(i int) { r.connect(i) })
		took := time.Since(t0)
		if took > grace {
			t.Fatalf("storm took %v, longer than the grace period: the machine is too busy for this size (TERN_STORM_DEVICES)", took)
		}
		pubs := settle(r, grace+coalesce) - base
		report(t.Name(), 2*devices, took, pubs)
		if pubs > int64(users) {
			t.Errorf("%d publications for %d users", pubs, users)
		}
	})
	t.Run("takeover of half-open connections", func(t *testing.T) {
		r := newStormRig(t, devices, grace, coalesce)
		base := settle(r, coalesce+100*time.Millisecond)
		t0 := time.Now()
		r.each(func(i int) {
			old := r.devs[i]
			r.connect(i)
			id := ident(i)
			r.hook.OnWillSent(old, packets.Packet{TopicName: topics.Up(id.UID, id.DID, topics.UpPres), Payload: []byte(`{"s":"off"}`)})
			r.disconnect(old)
		})
		took := time.Since(t0)
		pubs := settle(r, grace+coalesce) - base
		report(t.Name(), 3*devices, took, pubs)
		if pubs != 0 {
			t.Errorf("%d publications after a takeover storm, want 0", pubs)
		}
	})
	t.Run("cut, back after grace", func(t *testing.T) {
		r := newStormRig(t, devices, grace, coalesce)
		base := settle(r, coalesce+100*time.Millisecond)
		t0 := time.Now()
		r.each(func(i int) { r.disconnect(r.devs[i]) })
		took := time.Since(t0)
		off := settle(r, grace+coalesce) - base
		t1 := time.Now()
		r.each(func(i int) { r.connect(i) })
		took += time.Since(t1)
		pubs := settle(r, coalesce+100*time.Millisecond) - base
		report(t.Name(), 2*devices, took, pubs)
		if off != int64(users) || pubs > 3*int64(users) {
			t.Errorf("%d off and %d publications in all for %d users", off, pubs, users)
		}
	})
	t.Run("no grace, no coalescing", func(t *testing.T) {
		r := newStormRig(t, devices, 0, 0)
		base := r.pubs.Load()
		t0 := time.Now()
		r.each(func(i int) { r.disconnect(r.devs[i]) })
		r.each(func(i int) { r.connect(i) })
		took := time.Since(t0)
		pubs := r.pubs.Load() - base
		report(t.Name(), 2*devices, took, pubs)
		// Without grace or coalescing every user goes off when its last
		// device goes and on when the first comes back: at least two
		// publications per user, at most one per event.
		if pubs < 2*int64(users) || pubs > 2*int64(devices) {
			t.Errorf("%d publications for %d users and %d events, want %d..%d", pubs, users, 2*devices, 2*users, 2*devices)
		}
	})
	for _, res := range results {
		t.Logf("%-52s %6d devices %6d users: %6.0f publications (%.2f/user), %6d events in %v (%.1f µs/event)",
			res.name, devices, users, res.pubs, res.perUser, res.events, res.took.Round(time.Millisecond),
			float64(res.took.Microseconds())/float64(res.events))
	}
}

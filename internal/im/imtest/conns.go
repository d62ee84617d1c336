package imtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/tern-im/tern/internal/im"
)

// ClusterChecks is the suite of the ports only a store that several nodes
// share implements: the connection registry and presence versions that
// never go back when two nodes write.
var ClusterChecks = []ClusterCheck{
	{"ConnectionsReplaceAndDisconnect", connsReplace},
	{"ConnectionsDropOnce", connsDrop},
	{"PresenceVersionsOnlyGrow", presenceGrows},
}

// ClusterCheck is one property of the cluster ports.
type ClusterCheck struct {
	Name string
	Run  func(t testing.TB, b ClusterBackend)
}

// ClusterBackend is one open, empty cluster store as two nodes see it
// (each through its own connection; the two may be the same value).
type ClusterBackend struct {
	Conns    [2]im.Connections
	Presence [2]im.PresenceStore
}

// RunCluster runs every cluster check against a fresh backend from open.
func RunCluster(t *testing.T, open func(t testing.TB) ClusterBackend) {
	for _, c := range ClusterChecks {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			c.Run(t, open(t))
		})
	}
}

func conns(t testing.TB, r im.Connections, uid string) []string {
	t.Helper()
	cs, err := r.Conns(uid)
	if err != nil {
		t.Fatalf("Conns(%s): %v", uid, err)
	}
	var out []string
	for _, c := range cs {
		if c.UID != uid {
			t.Fatalf("Conns(%s) returned %+v", uid, c)
		}
		out = append(out, fmt.Sprintf("%s@%s#%d", c.DID, c.Node, c.Gen))
	}
	slices.Sort(out)
	return out
}

func wantConns(t testing.TB, r im.Connections, uid string, want ...string) {
	t.Helper()
	if got := conns(t, r, uid); !slices.Equal(got, want) {
		t.Fatalf("connections of %s: %v, want %v", uid, got, want)
	}
}

// connsReplace: a device has one current connection; the newest wins
// wherever it is; a disconnect of a connection that is no longer current
// changes nothing.
func connsReplace(t testing.TB, b ClusterBackend) {
	r, other := b.Conns[0], b.Conns[1]
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	wantConns(t, r, "alice")
	must(r.Connect(im.Conn{UID: "alice", DID: "p1", Node: "n1", Gen: 10}))
	must(r.Connect(im.Conn{UID: "alice", DID: "p2", Node: "n2", Gen: 20}))
	must(r.Connect(im.Conn{UID: "bob", DID: "p1", Node: "n1", Gen: 11}))
	wantConns(t, r, "alice", "p1@n1#10", "p2@n2#20")
	// p1 moves to n3 (taken over there); n1's late disconnect is stale.
	must(other.Connect(im.Conn{UID: "alice", DID: "p1", Node: "n3", Gen: 30}))
	must(r.Disconnect(im.Conn{UID: "alice", DID: "p1", Node: "n1", Gen: 10}))
	wantConns(t, other, "alice", "p1@n3#30", "p2@n2#20")
	// Same node, older generation: stale too.
	must(r.Disconnect(im.Conn{UID: "alice", DID: "p2", Node: "n2", Gen: 19}))
	wantConns(t, r, "alice", "p1@n3#30", "p2@n2#20")
	must(r.Disconnect(im.Conn{UID: "alice", DID: "p2", Node: "n2", Gen: 20}))
	must(other.Disconnect(im.Conn{UID: "alice", DID: "p1", Node: "n3", Gen: 30}))
	wantConns(t, r, "alice")
	wantConns(t, r, "bob", "p1@n1#11")
	// A device that comes back after its entry went is recorded again.
	must(r.Connect(im.Conn{UID: "alice", DID: "p1", Node: "n1", Gen: 40}))
	wantConns(t, r, "alice", "p1@n1#40")
	// Names that are not plain tokens work.
	must(r.Connect(im.Conn{UID: "a.b", DID: "x:y", Node: "n1", Gen: 1}))
	wantConns(t, r, "a.b", "x:y@n1#1")

	// Racing connects and disconnects of different devices of one user
	// lose none.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := im.Conn{UID: "carol", DID: fmt.Sprint("d", i), Node: fmt.Sprint("n", i%3), Gen: uint64(i + 1)}
			r := b.Conns[i%2]
			if err := r.Connect(c); err != nil {
				errs <- err
				return
			}
			if i%2 == 0 {
				if err := r.Disconnect(c); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantConns(t, r, "carol", "d1@n1#2", "d3@n0#4", "d5@n2#6", "d7@n1#8")
}

// connsDrop: Drop removes what gone selects, and when two nodes drop the
// same connections at once each connection is reported to one of them.
func connsDrop(t testing.TB, b ClusterBackend) {
	r := b.Conns[0]
	for i := range 20 {
		for j, node := range []string{"dead", "live"} {
			c := im.Conn{UID: fmt.Sprint("u", i), DID: fmt.Sprint("d", j), Node: node, Gen: uint64(100 + i)}
			if err := r.Connect(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	dead := func(c im.Conn) bool { return c.Node == "dead" }
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := b.Conns[i].Drop(dead)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range cs {
				if c.Node != "dead" {
					t.Errorf("dropped %+v", c)
				}
				seen[c.UID+"."+c.DID]++
			}
		}()
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Fatalf("dropped %d connections, want 20: %v", len(seen), seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s reported dropped %d times", k, n)
		}
	}
	for i := range 20 {
		wantConns(t, b.Conns[1], fmt.Sprint("u", i), fmt.Sprintf("d1@live#%d", 100+i))
	}
	if cs, err := r.Drop(dead); err != nil || len(cs) != 0 {
		t.Fatalf("second Drop: %v %v", cs, err)
	}
}

// presenceGrows: a presence whose pv is not greater than the stored one
// is refused with ErrStale, and of two racing writers of the same next pv
// exactly one wins.
func presenceGrows(t testing.TB, b ClusterBackend) {
	s := b.Presence[0]
	if err := s.PutPresence("alice", im.Presence{S: "on", PV: 1, D: 1}); err != nil {
		t.Fatal(err)
	}
	for _, pv := range []uint64{1, 0} {
		if err := s.PutPresence("alice", im.Presence{S: "off", PV: pv}); !errors.Is(err, im.ErrStale) {
			t.Fatalf("PutPresence pv %d over pv 1: %v, want ErrStale", pv, err)
		}
	}
	var wg sync.WaitGroup
	res := make([]error, 4)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = b.Presence[i%2].PutPresence("alice", im.Presence{S: "on", PV: 2, D: i + 1})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range res {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, im.ErrStale):
			t.Fatalf("racing PutPresence: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racing writers of pv 2 won, want 1", won)
	}
	p, err := b.Presence[1].Presence("alice")
	if err != nil || p.PV != 2 {
		t.Fatalf("stored %+v %v, want pv 2", p, err)
	}
}

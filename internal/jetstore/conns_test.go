package jetstore

import (
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/imtest"
)

// TestClusterConformance runs the cluster ports' conformance suite (the
// connection registry, presence versions) against a single embedded
// JetStream node, with two stores on it, each on its own connection, as
// two nodes would be.
func TestClusterConformance(t *testing.T) {
	t.Parallel()
	imtest.RunCluster(t, func(t testing.TB) imtest.ClusterBackend {
		n := startNode(t)
		a, b := openOn(t, n, 1, nil, nil), openOn(t, n, 1, nil, nil)
		return imtest.ClusterBackend{Conns: [2]im.Connections{a, b}, Presence: [2]im.PresenceStore{a, b}}
	})
}

// TestWatchPresence: a watch delivers the stored presences first, then
// every one written by any store (node), in order.
func TestWatchPresence(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	a, b := openOn(t, n, 1, nil, nil), openOn(t, n, 1, nil, nil)
	if err := a.PutPresence("alice", im.Presence{S: "on", PV: 1, D: 1}); err != nil {
		t.Fatal(err)
	}
	type got struct {
		uid     string
		pv      uint64
		initial bool
	}
	ch := make(chan got, 10)
	stop, err := b.WatchPresence(func(uid string, p im.Presence, initial bool) { ch <- got{uid, p.PV, initial} })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if g := <-ch; g != (got{"alice", 1, true}) {
		t.Fatalf("first: %+v", g)
	}
	if err := a.PutPresence("alice", im.Presence{S: "off", PV: 2}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutPresence("b.b", im.Presence{S: "on", PV: 1}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []got{{"alice", 2, false}, {"b.b", 1, false}} {
		select {
		case g := <-ch:
			if g != want {
				t.Fatalf("got %+v, want %+v", g, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %+v", want)
		}
	}
}

// TestServerRecord: the server record keeps the greatest epoch announced
// (a lower one changes nothing) and a watch follows it.
func TestServerRecord(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	a, b := openOn(t, n, 1, nil, nil), openOn(t, n, 1, nil, nil)
	ch := make(chan ServerInfo, 10)
	stop, err := b.WatchServer(func(si ServerInfo) { ch <- si })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, si := range []ServerInfo{{Epoch: 3, V: "x", TS: 30}, {Epoch: 2, V: "old", TS: 40}, {Epoch: 5, V: "y", TS: 50}} {
		if err := a.AnnounceServer(si); err != nil {
			t.Fatal(err)
		}
	}
	// The watch sees the latest record, and maybe (not necessarily: the
	// bucket keeps one value per key) the one before; never epoch 2.
	var last uint64
	for last != 5 {
		select {
		case si := <-ch:
			if si.Epoch != 3 && si.Epoch != 5 || si.Epoch <= last {
				t.Fatalf("record epoch %d after %d", si.Epoch, last)
			}
			last = si.Epoch
		case <-time.After(10 * time.Second):
			t.Fatalf("no record with epoch 5 (last %d)", last)
		}
	}
	if cur := <-announced(t, a); cur.Epoch != 5 || cur.V != "y" {
		t.Fatalf("stored record %+v", cur)
	}
}

// announced reads the stored server record through a watch's first pass.
func announced(t *testing.T, s *Store) <-chan ServerInfo {
	t.Helper()
	ch := make(chan ServerInfo, 1)
	stop, err := s.WatchServer(func(si ServerInfo) {
		select {
		case ch <- si:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ch
}

// FuzzDecodeConns: a connections record decodes or errs, never panics,
// and what decodes encodes back to the same list.
func FuzzDecodeConns(f *testing.F) {
	f.Add([]byte(`[{"u":"alice","d":"p1","n":"n1","g":42}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"g":-1}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := decodeConns(b)
		if err != nil {
			return
		}
		v, err := encodeConns(cs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeConns(v)
		if err != nil || len(again) != len(cs) {
			t.Fatalf("round trip: %v %v", again, err)
		}
		for i := range cs {
			if again[i] != cs[i] {
				t.Fatalf("round trip: %+v != %+v", again[i], cs[i])
			}
		}
	})
}

package jetstore

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/imtest"
)

// startNode starts a lone embedded JetStream server in t.TempDir().
func startNode(t testing.TB) *Node {
	t.Helper()
	n, err := StartNode(NodeOptions{Name: "solo", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

// openOn opens a store on node n.
func openOn(t testing.TB, n *Node, replicas int, clk func() time.Time, commits *im.CommitStream) *Store {
	t.Helper()
	nc, err := n.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Open(ctx, nc, Options{Replicas: replicas, Now: clk, Commits: commits})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openBackend opens an empty store on its own single JetStream node.
func openBackend(t testing.TB) imtest.Backend {
	t.Helper()
	clk := imtest.NewClock()
	commits := im.NewCommitStream(64, 4)
	s := openOn(t, startNode(t), 1, clk.Now, commits)
	return imtest.Backend{Store: s, Commits: commits, Clock: clk, Feed: s, Compliance: s, Trim: func(cutoff time.Time) error {
		_, err := s.Trim(cutoff)
		return err
	}}
}

// TestConformance runs the im port conformance suite against a single
// embedded JetStream node.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, c := range imtest.Checks {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			c.Run(t, openBackend(t))
		})
	}
}

// TestPurge: a del's purge marks the message and its edits deleted, in
// the same commit; users read tombstones (no body) unless nothing asked
// for it; Keep keeps the stored bodies (for a legal hold's export).
func TestPurge(t *testing.T) {
	t.Parallel()
	b := openBackend(t)
	st := b.Store.(*Store)
	for _, keep := range []bool{false, true} {
		cv := fmt.Sprintf("g:p%v", keep)
		m := &im.Append{CV: cv, To: []string{"a"}, Event: im.Event{T: im.TMsg, From: "a", B: "secret"}}
		if err := st.Append(m); err != nil {
			t.Fatal(err)
		}
		id := m.Event.ID
		ed := &im.Append{CV: cv, To: []string{"a"}, Event: im.Event{T: im.TEdit, From: "a", B: "secret 2", Tgt: &id}}
		del := &im.Append{CV: cv, To: []string{"a"}, Event: im.Event{T: im.TDel, From: "a", Tgt: &id}, Purge: &im.Purge{ID: id, Keep: keep}}
		if err := st.Append(ed, del); err != nil {
			t.Fatal(err)
		}
		if n := len(del.Purge.Forgotten); n != 2 {
			t.Errorf("keep=%v: %d forgotten, want the message and its edit", keep, n)
		}
		page, _, err := st.History(im.HistoryQuery{CV: cv, Window: im.Open, Max: 10})
		if err != nil || len(page) != 3 || page[0].B != "" || page[1].B != "" || !page[0].Deleted || !page[1].Deleted {
			t.Fatalf("keep=%v: history %+v, %v", keep, page, err)
		}
		if ev, err := st.EventByID(id); err != nil || !ev.Deleted || ev.B != "" {
			t.Errorf("keep=%v: EventByID %+v %v", keep, ev, err)
		}
		raw, _, err := st.loadRaw(eventSubj(cv, 1))
		if err != nil || (raw.B == "secret") != keep {
			t.Errorf("keep=%v: stored body %q, %v", keep, raw.B, err)
		}
	}
}

// startCluster starts three embedded JetStream servers routed together
// on loopback, each with its own directory and ports.
func startCluster(t testing.TB) []*Node {
	t.Helper()
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	}
	nodes := make([]*Node, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		var routes []string
		for j, a := range addrs {
			if j != i {
				routes = append(routes, "nats://"+a)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = StartNode(NodeOptions{Name: fmt.Sprint("n", i+1), Cluster: "conf", Listen: addrs[i],
				Routes: routes, Dir: t.TempDir(), SyncAlways: true})
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(n.Shutdown)
	}
	return nodes
}

// spread appends through the three nodes' stores in turn and reads
// through another: positions must stay gap-free when every node writes.
type spread struct {
	im.Store
	all []*Store
	n   atomic.Int64
}

func (s *spread) Append(as ...*im.Append) error {
	return s.all[int(s.n.Add(1))%len(s.all)].Append(as...)
}

// TestConformanceCluster runs the conformance suite against a three-node
// embedded cluster (R3, every write fsynced), appending through all
// three nodes at once, with holds and retentions set through the third
// and the trimmer run by the first. Each node commits to its own commit stream, so
// the commit-stream checks (single-node order) are left to
// TestConformance. The feed's ids are in commit order only where one
// node stamps them (nodes stamp ids from their own clocks,
// docs/cluster.md): its check appends through the first node and reads
// the feed through the second, whose batched reads any replica answers,
// once every replica has applied the log (a replica's log is a prefix
// of the leader's, and the feed reads what it holds).
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers per check")
	}
	t.Parallel()
	open := func(t testing.TB, feed bool) imtest.Backend {
		clk := imtest.NewClock()
		nodes := startCluster(t)
		var stores []*Store
		for _, n := range nodes {
			stores = append(stores, openOn(t, n, 3, clk.Now, nil))
		}
		st := stores[0]
		b := imtest.Backend{Store: &spread{Store: stores[1], all: stores}, Clock: clk, Compliance: stores[2], Trim: func(cutoff time.Time) error {
			_, err := st.Trim(cutoff)
			return err
		}}
		if feed {
			b.Store, b.Feed = st, settled{t: t, Store: stores[1], nodes: nodes}
		}
		return b
	}
	for _, c := range imtest.Checks {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			c.Run(t, open(t, c.Name == "FeedInCommitOrder"))
		})
	}
}

// settled reads the feed through Store once every node's replica has
// applied the log.
type settled struct {
	*Store
	t     testing.TB
	nodes []*Node
}

func (s settled) After(after ulid.ULID, max int) ([]im.Event, error) {
	waitFor(s.t, "every replica to apply the log", func() bool { return applied(s.t, s.Store, s.nodes) })
	return s.Store.After(after, max)
}

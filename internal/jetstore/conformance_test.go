package jetstore

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	return imtest.Backend{Store: s, Commits: commits, Clock: clk, Feed: s, Trim: func(cutoff time.Time) error {
		_, err := s.Trim(cutoff)
		return err
	}}
}

// TestConformance runs the im port conformance suite against a single
// embedded JetStream node.
func TestConformance(t *testing.T) {
	t.Parallel()
	imtest.Run(t, openBackend)
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
// three nodes at once. Each node commits to its own commit stream, so
// the commit-stream checks (single-node order) are left to
// TestConformance, and so is the feed: nodes stamp ids from their own
// clocks, so the feed's id order is one node's (docs/cluster.md).
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers per check")
	}
	t.Parallel()
	open := func(t testing.TB) imtest.Backend {
		clk := imtest.NewClock()
		nodes := startCluster(t)
		var stores []*Store
		for _, n := range nodes {
			stores = append(stores, openOn(t, n, 3, clk.Now, nil))
		}
		st := stores[0]
		return imtest.Backend{Store: &spread{Store: stores[1], all: stores}, Clock: clk, Trim: func(cutoff time.Time) error {
			_, err := st.Trim(cutoff)
			return err
		}}
	}
	for _, c := range imtest.Checks {
		if c.Name == "FeedInCommitOrder" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			c.Run(t, open(t))
		})
	}
}

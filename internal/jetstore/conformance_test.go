package jetstore

import (
	"context"
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
	return imtest.Backend{Store: s, Commits: commits, Clock: clk, Trim: func(cutoff time.Time) error {
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

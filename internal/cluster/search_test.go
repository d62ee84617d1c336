package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
)

// TestSearchAcrossNodes: each node indexes the shared stream, so messages
// sent through any node are found through every node, with the same
// visibility rules: alice (node 1) and carol (node 2) each DM bob; bob
// finds both on node 3, and alice finds only her own on node 2.
func TestSearchAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	for _, u := range []string{"alice", "bob", "carol"} {
		nodes[0].AddUser(u, pw)
	}
	a := on(t, nodes[0], "alice", "p1")
	c := on(t, nodes[1], "carol", "p1")
	a.text("bob", "a1", "harbour meeting at noon")
	c.text("bob", "c1", "the harbour is closed")
	var sent []codec.Event // each sender's own copy
	for _, d := range []*dev{a, c} {
		for ev := d.next(); ; ev = d.next() {
			if ev.From == d.uid {
				sent = append(sent, ev)
				break
			}
		}
	}
	for i, n := range nodes {
		for _, ev := range sent {
			ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
			err := n.Search().Wait(ctx, ev.ID)
			cancel()
			if err != nil {
				t.Fatalf("node %d's index did not reach %s: %v", i+1, ev.ID, err)
			}
		}
	}
	search := func(d *dev, q string) []string {
		t.Helper()
		var r codec.SearchResult
		d.ok("search", map[string]any{"q": q}, &r)
		var out []string
		for _, it := range r.Items {
			out = append(out, fmt.Sprint(it.From, ": ", it.B, " [", it.HL, "]"))
		}
		return out
	}
	b3 := on(t, nodes[2], "bob", "p3")
	got := search(b3, "harbour")
	want := []string{"carol: the harbour is closed [the <mark>harbour</mark> is closed]", "alice: harbour meeting at noon [<mark>harbour</mark> meeting at noon]"}
	if !slices.Equal(got, want) {
		t.Fatalf("bob on node 3: %q, want %q", got, want)
	}
	a2 := on(t, nodes[1], "alice", "p2")
	if got := search(a2, "harbour"); !slices.Equal(got, want[1:]) {
		t.Fatalf("alice on node 2: %q, want %q", got, want[1:])
	}
}

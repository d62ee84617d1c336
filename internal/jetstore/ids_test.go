package jetstore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/imtest"
)

// TestIDsUniqueAcrossNodes: three nodes append in turn to five
// conversations while the clock stands still, so every id is made in one
// millisecond and each node keeps building on ids another node made.
// Every id must be distinct, and its index entry must name its own event:
// two nodes that step from one floor into different conversations made
// the same id (their conversations' compare-and-sets do not meet), and
// the later index entry overwrote the earlier one.
func TestIDsUniqueAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers")
	}
	t.Parallel()
	clk := imtest.NewClock() // never advanced
	nodes := startCluster(t)
	var stores []*Store
	for _, n := range nodes {
		stores = append(stores, openOn(t, n, 3, clk.Now, nil))
	}
	cvs := []string{im.DMConv("a", "b"), im.DMConv("a", "c"), im.DMConv("b", "c"), "g:x", "g:y"}
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 150
	var done []*im.Append
	for k := range n {
		a := &im.Append{CV: cvs[rng.IntN(len(cvs))], To: []string{"a", "b", "c"}, Event: im.Event{T: im.TMsg, From: "a", B: fmt.Sprint(k)}}
		if err := stores[k%len(stores)].Append(a); err != nil {
			t.Fatal(err)
		}
		done = append(done, a)
	}
	seen := map[ulid.ULID]string{}
	for _, a := range done {
		id, at := a.Event.ID, eventSubj(a.CV, a.Event.Seq)
		if other, dup := seen[id]; dup {
			t.Fatalf("id %s made twice: %s and %s", id, other, at)
		}
		seen[id] = at
		r, err := stores[0].getLeader(idSubj(id))
		if err != nil {
			t.Fatalf("index entry of %s: %v", id, err)
		}
		if string(r.data) != at {
			t.Fatalf("index entry of %s names %s, want %s", id, r.data, at)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d ids, want %d", len(seen), n)
	}
}

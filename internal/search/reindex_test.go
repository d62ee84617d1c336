package search_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/internal/store"
)

// cancelling is the real store, cancelling ctx once it has served n
// reads: an operator's Ctrl-C in the middle of a reindex.
type cancelling struct {
	*store.Store
	n      int
	cancel context.CancelFunc
}

func (c *cancelling) After(after ulid.ULID, max int) ([]im.Event, error) {
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return c.Store.After(after, max)
}

// TestReindex: an interrupted reindex keeps what it did and a second run
// resumes and puts the new index in place of the old one.
func TestReindex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var want []ulid.ULID
	for range 50 {
		a := &im.Append{CV: "d:alice:bob", Event: im.Event{T: im.TMsg, From: "alice", B: "needle in the haystack"}}
		if err := st.Append(a); err != nil {
			t.Fatal(err)
		}
		want = append(want, a.Event.ID)
	}
	slices.Reverse(want)
	idx := filepath.Join(dir, "search")
	if err := os.MkdirAll(idx, 0o700); err != nil { // an old index, replaced
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := search.Options{Source: &cancelling{Store: st, n: 2, cancel: cancel}, Batch: 10, PruneEvery: time.Hour}
	n, err := search.Reindex(ctx, idx, o)
	if !errors.Is(err, context.Canceled) || n != 20 {
		t.Fatalf("interrupted reindex: %d, %v; want 20 events and context.Canceled", n, err)
	}
	o.Source = st
	n, err = search.Reindex(context.Background(), idx, o)
	if err != nil || n != 30 {
		t.Fatalf("resumed reindex: %d, %v; want the 30 left", n, err)
	}
	if _, err := os.Stat(idx + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("work dir left behind: %v", err)
	}
	x, err := search.Open(idx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	terms, _ := im.ParseSearch("needle")
	hits, _, err := x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{open1("d:alice:bob")}, Max: 100})
	if err != nil || !slices.Equal(ids(hits), want) {
		t.Fatalf("after reindex: %d hits, %v", len(hits), err)
	}
}

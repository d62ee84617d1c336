package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/internal/store"
)

// TestSearchReindex: `tern search reindex` builds the index of a stopped
// broker's data dir from its store; it refuses unknown verbs.
func TestSearchReindex(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"first words", "second words", "unrelated"} {
		if err := st.Append(&im.Append{CV: "d:alice:bob", Event: im.Event{T: im.TMsg, From: "alice", B: b}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, _, err := tern(t, "", "search", "reindex", "--data", dir)
	if err != nil || !strings.Contains(out, "3 events read, index rebuilt in "+filepath.Join(dir, "search")) {
		t.Fatalf("reindex: %q %v", out, err)
	}
	if _, _, err := tern(t, "", "search", "rebuild", "--data", dir); err == nil {
		t.Fatal("unknown verb accepted")
	}

	st, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	x, err := search.Open(filepath.Join(dir, "search"), search.Options{Source: st, Batch: 10, PruneEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if n, err := x.CatchUp(context.Background()); err != nil || n != 0 {
		t.Fatalf("reindexed index is %d behind: %v", n, err)
	}
	terms, _ := im.ParseSearch("words")
	hits, _, err := x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{{CV: "d:alice:bob", Window: im.Open}}, Max: 10})
	if err != nil || len(hits) != 2 {
		t.Fatalf("hits %v, %v", hits, err)
	}
}

package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/store"
)

// TestStoreCheck: `tern store check` on a data dir holding a record in the
// old bad shape reports it and exits non-zero; --repair quarantines it and
// exits zero; a second check is clean.
func TestStoreCheck(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := st.Append(&im.Append{CV: "g:ops", To: []string{"a"}, Event: codec.Event{T: codec.TMsg, From: "a", B: "hi"}}); err != nil {
			t.Fatal(err)
		}
	}
	var v any = 1
	for range 20 {
		v = map[string]any{"a": v}
	}
	bad, err := cbor.Marshal(map[string]any{"t": "msg", "cv": "g:ops", "seq": 2, "e2e": v})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutRawEvent("g:ops", 2, bad); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	out, _, err := tern(t, "", "store", "check", "--data", dir)
	if !errors.Is(err, errProblems) || !strings.Contains(out, "unreadable\tevent g:ops/2\t") || !strings.Contains(out, "2 event records scanned, 1 unreadable") {
		t.Fatalf("check: %q %v", out, err)
	}
	out, _, err = tern(t, "", "store", "check", "--repair", "--data", dir)
	if err != nil || !strings.Contains(out, "1 quarantined") {
		t.Fatalf("repair: %q %v", out, err)
	}
	out, _, err = tern(t, "", "store", "--data", dir, "check")
	if err != nil || !strings.Contains(out, "1 event records scanned, 0 unreadable") {
		t.Fatalf("check after repair: %q %v", out, err)
	}
	if _, _, err := tern(t, "", "store", "fix", "--data", dir); err == nil {
		t.Fatal("unknown verb accepted")
	}
}

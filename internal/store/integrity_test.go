package store

import (
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// badShape is a stored event in the shape main accepted: an e2e nested
// beyond the read limits.
func badShape(t testing.TB, cv string, seq uint64) []byte {
	t.Helper()
	var v any = 1
	for range codec.MaxNestedLevels + 4 {
		v = map[string]any{"a": v}
	}
	p, err := cbor.Marshal(map[string]any{"t": "msg", "cv": cv, "seq": seq, "b": "x", "e2e": v})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckRepair: Check reports an unreadable event record by key and
// reason; with repair it moves it to the quarantine prefix, after which
// reads no longer meet it and a second Check is clean.
func TestCheckRepair(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	for i := range 3 {
		a := &im.Append{CV: "d:a:b", To: []string{"a", "b"}, Event: codec.Event{T: codec.TMsg, From: "a", B: string(rune('x' + i))}}
		if err := s.Append(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutRawEvent("d:a:b", 2, badShape(t, "d:a:b", 2)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Check(false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Scanned != 3 || len(r.Problems) != 1 || r.Problems[0].Key != "event d:a:b/2" || !strings.Contains(r.Problems[0].Reason, "nested") {
		t.Fatalf("check: %+v", r)
	}
	items, _, err := s.History(im.HistoryQuery{CV: "d:a:b", Window: im.Window{From: 1}, Max: 10})
	if err != nil || len(items) != 2 || s.Unreadable() != 1 {
		t.Fatalf("history before repair: %d items, %v, unreadable %d", len(items), err, s.Unreadable())
	}
	if r, err = s.Check(true); err != nil || r.Quarantined != 1 {
		t.Fatalf("repair: %+v %v", r, err)
	}
	if q, err := s.Quarantined(); err != nil || len(q) != 1 || q[0] != "event d:a:b/2" {
		t.Fatalf("quarantined: %v %v", q, err)
	}
	evs, _, err := s.Stream("b", 0, 10)
	if err != nil || len(evs) != 2 || s.Unreadable() != 1 {
		t.Fatalf("stream after repair: %d events, %v, unreadable %d", len(evs), err, s.Unreadable())
	}
	if r, err = s.Check(false); err != nil || len(r.Problems) != 0 || r.Scanned != 2 {
		t.Fatalf("check after repair: %+v %v", r, err)
	}
}

package store

import (
	"fmt"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestAppendConcurrentGapFree(t *testing.T) {
	t.Parallel()
	s, dir := openTest(t)
	const senders, per = 8, 50
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				a := &im.Append{CV: "d:a:b", To: []string{"a", "b"}, UID: "a", DID: fmt.Sprint(i), CMID: fmt.Sprint(j),
					Event: codec.Event{T: codec.TMsg, From: "a", B: "x"}}
				if err := s.Append(a); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	check := func(s *Store) {
		evs, more, err := s.Stream("b", 0, 1000)
		if err != nil || more || len(evs) != senders*per {
			t.Fatalf("stream: %d events, more %v, err %v", len(evs), more, err)
		}
		for i, ev := range evs {
			if ev.US != uint64(i+1) || ev.Seq != uint64(i+1) {
				t.Fatalf("event %d: us %d seq %d", i, ev.US, ev.Seq)
			}
			if i > 0 && ev.ID.Compare(evs[i-1].ID) <= 0 {
				t.Fatalf("ids not monotonic at %d", i)
			}
		}
	}
	check(s)
	// A resend is a dedupe hit, not a new event.
	a := &im.Append{CV: "d:a:b", To: []string{"a", "b"}, UID: "a", DID: "0", CMID: "0", Event: codec.Event{T: codec.TMsg}}
	if err := s.Append(a); err != nil || a.Dup == nil || a.Dup.Seq == 0 {
		t.Fatalf("dedupe: err %v dup %v", err, a.Dup)
	}
	// Counters survive a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	a = &im.Append{CV: "d:a:b", To: []string{"b"}, Event: codec.Event{T: codec.TMsg}}
	if err := s2.Append(a); err != nil || a.Event.Seq != senders*per+1 || a.US[0] != senders*per+1 {
		t.Fatalf("after restart: err %v seq %d us %v", err, a.Event.Seq, a.US)
	}
	if err := s2.Append(&im.Append{CV: "x"}); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if err := s2.Append(&im.Append{CV: "x"}); err != ErrClosed {
		t.Fatalf("append after close: %v", err)
	}
}

func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	for range 30 {
		if err := s.Append(&im.Append{CV: "g:x", To: []string{"a"}, Event: codec.Event{T: codec.TMsg}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name                  string
		lo, hi, before, after uint64
		max                   int
		first, last           uint64
		complete              bool
	}{
		{"newest", 0, 0, 0, 0, 10, 21, 30, false},
		{"before", 0, 0, 11, 0, 10, 1, 10, true},
		{"after", 0, 0, 0, 25, 10, 26, 30, true},
		{"clipped", 5, 12, 0, 0, 100, 5, 12, true},
		{"clipped after", 5, 12, 0, 1, 3, 5, 7, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, complete, err := s.History(im.HistoryQuery{CV: "g:x", Window: im.Window{From: tc.lo, To: tc.hi}, Before: tc.before, After: tc.after, Max: tc.max})
			if err != nil || len(items) == 0 {
				t.Fatalf("err %v, %d items", err, len(items))
			}
			if items[0].Seq != tc.first || items[len(items)-1].Seq != tc.last || complete != tc.complete {
				t.Fatalf("got %d..%d complete %v", items[0].Seq, items[len(items)-1].Seq, complete)
			}
		})
	}
}

// TestDedupeUS: a dedupe hit carries the us the event got in the
// sender's own stream, from the store and within one batch; entries
// written as a bare pointer (before us was kept) still resolve.
func TestDedupeUS(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	for range 2 {
		if err := s.Append(&im.Append{CV: "g:x", To: []string{"a"}, Event: codec.Event{T: codec.TMsg}}); err != nil {
			t.Fatal(err)
		}
	}
	send := func(cmid string) *im.Append {
		return &im.Append{CV: "d:a:b", To: []string{"b", "a"}, UID: "a", DID: "p1", CMID: cmid, Event: codec.Event{T: codec.TMsg}}
	}
	first, again := send("c"), send("c")
	if err := s.Append(first, again); err != nil {
		t.Fatal(err)
	}
	if first.US[0] != 1 || first.US[1] != 3 {
		t.Fatalf("us %v", first.US)
	}
	if again.Dup == nil || again.Dup.US != 3 || again.Dup.Seq != 1 {
		t.Fatalf("same-batch dup %+v", again.Dup)
	}
	later := send("c")
	if err := s.Append(later); err != nil || later.Dup == nil || later.Dup.US != 3 {
		t.Fatalf("dup %+v, %v", later.Dup, err)
	}
	if ev, err := s.Deduped("a", "p1", "c"); err != nil || ev.US != 3 || ev.Seq != 1 {
		t.Fatalf("deduped %+v, %v", ev, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(key(tabDedupe, "a", "p0", "old"), ptr(ptrEvent, "d:a:b", 1))
	}); err != nil {
		t.Fatal(err)
	}
	if ev, err := s.Deduped("a", "p0", "old"); err != nil || ev.US != 0 || ev.Seq != 1 {
		t.Fatalf("bare pointer entry: %+v, %v", ev, err)
	}
}

package imtest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

// feed: im.Feed gives every committed conversation event once, in
// increasing id order, without aux events, page after page from any
// position; events trimmed by retention are no longer in it.
func feed(t testing.TB, b Backend) {
	if b.Feed == nil {
		t.Fatal("the backend has no Feed (the search index follows it)")
	}
	stop := consume(b)
	defer stop()
	var mu sync.Mutex
	var want []ulid.ULID
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				cv := []string{"g:f0", "g:f1", "g:f2"}[(w+i)%3]
				a := msg(cv, []string{"u0", "u1"}, "u0")
				if err := appendOne(b, a); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mark := &im.Append{CV: cv, Aux: true, To: []string{"u0"}, Event: im.Event{T: im.TMark, From: "u1", K: "read", Upto: a.Event.Seq}}
				if err := appendOne(b, mark); err != nil {
					t.Errorf("append mark: %v", err)
					return
				}
				mu.Lock()
				want = append(want, a.Event.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(want, ulid.ULID.Compare)
	got := readFeed(t, b, ulid.ULID{}, 7)
	if !slices.Equal(got, want) {
		t.Fatalf("feed from the start: %d events, want the %d appended, once each in id order", len(got), len(want))
	}
	if from := readFeed(t, b, want[41], 5); !slices.Equal(from, want[42:]) {
		t.Errorf("feed after the 42nd id: %d events, want %d", len(from), len(want)-42)
	}
	// Retention: what was trimmed is not in the feed any more.
	b.Clock.Advance(time.Hour)
	late := mustAppend(t, b, msg("g:f0", []string{"u0"}, "u0"))
	if err := b.Trim(b.Clock.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if after := readFeed(t, b, ulid.ULID{}, 10); !slices.Equal(after, []ulid.ULID{late.Event.ID}) {
		t.Errorf("feed after trimming: %d events, want only the one after the cutoff", len(after))
	}
}

// readFeed reads the whole feed after from, max at a time, checking that
// ids increase and no aux event appears.
func readFeed(t testing.TB, b Backend, from ulid.ULID, max int) []ulid.ULID {
	t.Helper()
	var out []ulid.ULID
	for {
		evs, err := b.Feed.After(from, max)
		if err != nil {
			t.Fatalf("After: %v", err)
		}
		if len(evs) > max {
			t.Fatalf("After(%d) returned %d events", max, len(evs))
		}
		for _, ev := range evs {
			if ev.T == im.TMark || ev.Seq == 0 || ev.ID.Compare(from) <= 0 {
				t.Fatalf("After(%s): event %+v is aux or not after the position", from, ev)
			}
			out = append(out, ev.ID)
			from = ev.ID
		}
		if len(evs) < max {
			return out
		}
	}
}

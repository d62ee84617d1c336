package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// clock is a settable clock for the sequencer and the trimmer.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestRetention: the background trimmer, driven by an injected clock,
// deletes stream entries, events, their ids and reactions older than the
// retention, raises the stream floor (Stream then says ErrTrimmed), turns
// a resend of a trimmed command into a silent hit, and never lets seq or
// us go backwards, across a restart too.
func TestRetention(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	passes := make(chan TrimStats, 64)
	dir := t.TempDir()
	opts := Options{
		Retention: time.Hour, TrimEvery: 2 * time.Millisecond, Now: clk.Now,
		OnTrim: func(st TrimStats, err error) {
			if err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("trim: %v", err)
			}
			select {
			case passes <- st:
			default:
			}
		},
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	send := func(cmid string) *im.Append {
		t.Helper()
		a := &im.Append{CV: "d:a:b", To: []string{"a", "b"}, UID: "a", DID: "p1", CMID: cmid,
			Event: codec.Event{T: codec.TMsg, From: "a", B: cmid}}
		if err := s.Append(a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	var old []*im.Append
	for i := range 5 {
		old = append(old, send(fmt.Sprint("old", i)))
	}
	react := &im.Append{CV: "d:a:b", To: []string{"a", "b"}, Event: codec.Event{T: codec.TReact, From: "b", K: "x"},
		Reacts: []im.React{{ID: old[0].Event.ID, UID: "b", K: "x", On: true}}}
	mark := &im.Append{CV: "d:a:b", Aux: true, To: []string{"a"}, Event: codec.Event{T: codec.TMark, From: "b", K: "read", Upto: 6},
		Markers: []im.Marker{{CV: "d:a:b", UID: "b", K: "read", Upto: 6}}}
	if err := s.Append(react, mark); err != nil {
		t.Fatal(err)
	}
	clk.Add(30 * time.Minute)
	var fresh []*im.Append
	for i := range 3 {
		fresh = append(fresh, send(fmt.Sprint("new", i)))
	}
	// Nothing is older than an hour yet.
	if st, err := s.Trim(clk.Now().Add(-time.Hour)); err != nil || st != (TrimStats{}) {
		t.Fatalf("early trim: %+v, %v", st, err)
	}
	clk.Add(31 * time.Minute) // the first 6 events and the mark are now 61 minutes old
	deadline := time.After(10 * time.Second)
	for {
		if f, err := s.StreamFloor("b"); err != nil {
			t.Fatal(err)
		} else if f == 7 {
			break
		}
		select {
		case <-passes:
		case <-deadline:
			t.Fatal("the trimmer did not raise b's floor")
		}
	}
	// Let one more whole pass finish so the conversation tables are
	// trimmed too: drop the reports queued so far, then the pass in
	// progress reports, then a whole one.
	for len(passes) > 0 {
		<-passes
	}
	for range 2 {
		select {
		case <-passes:
		case <-deadline:
			t.Fatal("the trimmer stopped")
		}
	}
	check := func(s *Store) {
		t.Helper()
		if f, err := s.StreamFloor("a"); err != nil || f != 8 { // a also had the mark
			t.Fatalf("a's floor %d, %v", f, err)
		}
		if _, _, err := s.Stream("b", 0, 100); !errors.Is(err, ErrTrimmed) {
			t.Fatalf("stream from 0: %v, want ErrTrimmed", err)
		}
		evs, more, err := s.Stream("b", 6, 100)
		if err != nil || more || len(evs) != 3 || evs[0].US != 7 || evs[0].B != "new0" {
			t.Fatalf("stream from the floor: %+v, %v, %v", evs, more, err)
		}
		if _, err := s.EventByID(old[0].Event.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("trimmed event by id: %v", err)
		}
		if on, err := s.Reacted(old[0].Event.ID, "b", "x"); err != nil || on {
			t.Fatalf("reaction of a trimmed message: %v, %v", on, err)
		}
		items, _, err := s.History(im.HistoryQuery{CV: "d:a:b", Max: 100})
		if err != nil || len(items) != 3 || items[0].Seq != 7 {
			t.Fatalf("history: %+v, %v", items, err)
		}
		if _, err := s.Deduped("a", "p1", "old1"); !errors.Is(err, ErrGone) {
			t.Fatalf("deduped trimmed: %v", err)
		}
		if ev, err := s.Deduped("a", "p1", "new1"); err != nil || ev.Seq != 8 {
			t.Fatalf("deduped fresh: %+v, %v", ev, err)
		}
		if m, err := s.Marker("d:a:b", "b", "read"); err != nil || m != 6 {
			t.Fatalf("marker %d, %v", m, err)
		}
	}
	check(s)
	// A resend of a trimmed command is a hit with nothing to resend.
	a := send("old1")
	if a.Dup != nil || a.US != nil {
		t.Fatalf("resend of a trimmed command: dup %+v us %v", a.Dup, a.US)
	}
	// Counters go on from where they were, after a restart too.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	opts.OnTrim = nil
	if s, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	check(s)
	if a := send("after"); a.Event.Seq != 10 || a.US[0] != 11 || a.US[1] != 10 {
		t.Fatalf("after restart: seq %d us %v", a.Event.Seq, a.US)
	}
}

// TestCounterEviction: the sequencer's counter maps stay bounded and a
// counter dropped from memory is reloaded, never restarted.
func TestCounterEviction(t *testing.T) {
	old := maxCounters
	maxCounters = 4
	t.Cleanup(func() { maxCounters = old })
	s, _ := openTest(t)
	for round := range 3 {
		for i := range 10 {
			a := &im.Append{CV: fmt.Sprint("g:c", i), To: []string{fmt.Sprint("u", i), "all"}, Event: codec.Event{T: codec.TMsg}}
			if err := s.Append(a); err != nil {
				t.Fatal(err)
			}
			if a.Event.Seq != uint64(round+1) || a.US[0] != uint64(round+1) || a.US[1] != uint64(round*10+i+1) {
				t.Fatalf("round %d conv %d: seq %d us %v", round, i, a.Event.Seq, a.US)
			}
		}
	}
	// The maps are only touched by the sequencer goroutine; one more
	// append orders this read after its commits.
	if err := s.Append(&im.Append{CV: "g:x", To: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.seq.convSeq); n > maxCounters+1 {
		t.Fatalf("convSeq holds %d counters", n)
	}
	if n := len(s.seq.userUS); n > maxCounters+1 {
		t.Fatalf("userUS holds %d counters", n)
	}
}

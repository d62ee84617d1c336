// Package imtest is the conformance suite of the im ports: one set of
// checks that every storage backend of the IM core must pass (Badger
// today, from internal/store's tests; a distributed engine next). It pins
// what the domain relies on and what no type signature says: seq and us
// gap-free and never reused under concurrency, dedupe, membership
// windows, markers that never go back, retention's floor and reset,
// heads that never go backwards, a feed of committed events in order, and
// the compliance ports (holds, purge, per-conversation retention, export).
//
// A backend's test calls Run with a function that opens a fresh, empty
// backend. Failures runs one check against a backend and returns what it
// reported instead of failing the test: the suite's own tests use it to
// prove that a deliberately broken backend fails.
package imtest

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// Backend is one open, empty implementation of the ports.
type Backend struct {
	Store im.Store
	// Commits is the stream Store publishes committed appends on.
	Commits *im.CommitStream
	// Clock is the clock Store stamps events with (ts, ids, retention).
	Clock *Clock
	// Trim removes what is older than cutoff (the server default; zero:
	// none) or than a conversation's own retention, as retention does.
	Trim func(cutoff time.Time) error
	// Feed reads Store's committed events by position (the search index
	// follows it).
	Feed im.Feed
	// Compliance is the backend's holds, per-conversation retention and
	// export.
	Compliance im.Compliance
}

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed start.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Check is one property of the ports.
type Check struct {
	Name string
	Run  func(t testing.TB, b Backend)
}

// Checks is the suite.
var Checks = []Check{
	{"GapFreeUnderConcurrency", gapFree},
	{"Dedupe", dedupe},
	{"MembershipWindows", windows},
	{"MarkersNeverGoBack", markers},
	{"RetentionFloorAndReset", retention},
	{"HeadsNeverGoBack", heads},
	{"ContactsAndBlocks", contacts},
	{"FeedInCommitOrder", feed},
	{"HoldsAndPurge", holdsAndPurge},
	{"ConvRetention", convRetention},
}

// Run runs every check against a fresh backend from open.
func Run(t *testing.T, open func(t testing.TB) Backend) {
	for _, c := range Checks {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			c.Run(t, open(t))
		})
	}
}

// Failures runs check c against b and returns the failures it reported
// (none when b passes). Fatal failures end the check, not the caller.
func Failures(t *testing.T, c Check, b Backend) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(r, b)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Errorf(format string, args ...any) { r.record(fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)                 { r.record(fmt.Sprint(args...)) }
func (r *recorder) Fail()                             { r.record("Fail") }
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)                 { r.Error(args...); runtime.Goexit() }
func (r *recorder) FailNow()                          { r.Fail(); runtime.Goexit() }
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs) > 0
}

func (r *recorder) record(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg)
}

// appendOne appends a as the domain does: reserve a slot in the commit
// stream, append, give the slot back when nothing was committed.
func appendOne(b Backend, a *im.Append) error {
	if b.Commits != nil {
		if err := b.Commits.Reserve(nil, a); err != nil {
			return err
		}
	}
	err := b.Store.Append(a)
	if b.Commits != nil {
		b.Commits.Release(a) // a no-op once published
	}
	return err
}

func mustAppend(t testing.TB, b Backend, a *im.Append) *im.Append {
	t.Helper()
	if err := appendOne(b, a); err != nil {
		t.Fatalf("append to %s: %v", a.CV, err)
	}
	return a
}

// consume drains every lane of the commit stream until the returned
// stop is called and returns what it saw.
func consume(b Backend) (stop func() []im.Delivery) {
	if b.Commits == nil {
		return func() []im.Delivery { return nil }
	}
	var mu sync.Mutex
	var got []im.Delivery
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := range b.Commits.Lanes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			take := func(d im.Delivery) {
				mu.Lock()
				got = append(got, d)
				mu.Unlock()
				b.Commits.Done(d)
			}
			for {
				select {
				case d := <-b.Commits.Lane(i):
					take(d)
				case <-quit:
					for {
						select {
						case d := <-b.Commits.Lane(i):
							take(d)
						default:
							return
						}
					}
				}
			}
		}()
	}
	return func() []im.Delivery {
		close(quit)
		wg.Wait()
		return got
	}
}

func msg(cv string, to []string, from string) *im.Append {
	return &im.Append{CV: cv, To: to, Event: im.Event{T: im.TMsg, From: from, B: "x"}}
}

package store

import (
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/imtest"
)

// openBackend opens an empty Badger store as an imtest backend.
func openBackend(t testing.TB) imtest.Backend {
	t.Helper()
	clk := imtest.NewClock()
	commits := im.NewCommitStream(64, 4)
	s, err := Open(t.TempDir(), Options{Now: clk.Now, Commits: commits})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return imtest.Backend{Store: s, Commits: commits, Clock: clk, Feed: s, Compliance: s, Trim: func(cutoff time.Time) error {
		_, err := s.Trim(cutoff)
		return err
	}}
}

// TestConformance runs the im port conformance suite against Badger.
func TestConformance(t *testing.T) {
	t.Parallel()
	imtest.Run(t, openBackend)
}

// reusesSeq is a deliberately broken backend: every third append of a
// conversation reports the seq of the one before it (a sequencer that
// hands a position out twice).
type reusesSeq struct {
	im.Store
	mu sync.Mutex
	n  int
}

func (r *reusesSeq) Append(as ...*im.Append) error {
	err := r.Store.Append(as...)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range as {
		if err == nil && a.Committed() && !a.Aux {
			if r.n++; r.n%3 == 0 {
				a.Event.Seq--
			}
		}
	}
	return err
}

// forgetsMarks is another: it drops every marker that is not the first.
type forgetsMarks struct {
	im.Store
	mu     sync.Mutex
	marked bool
}

func (f *forgetsMarks) Append(as ...*im.Append) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range as {
		if len(a.Markers) > 0 {
			if f.marked {
				a.Markers[0].Upto = 1
			}
			f.marked = true
		}
	}
	return f.Store.Append(as...)
}

// keepsMembers is another: it never closes a membership window.
type keepsMembers struct{ im.Store }

func (k keepsMembers) Append(as ...*im.Append) error {
	for _, a := range as {
		for i := range a.Members {
			a.Members[i].SetTo = false
		}
	}
	return k.Store.Append(as...)
}

// TestConformanceCatchesBrokenBackends: the suite fails backends that
// break what it pins, and passes the real one on the same checks.
func TestConformanceCatchesBrokenBackends(t *testing.T) {
	t.Parallel()
	check := func(name string) imtest.Check {
		for _, c := range imtest.Checks {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no check %s", name)
		return imtest.Check{}
	}
	for _, tc := range []struct {
		check string
		wrap  func(im.Store) im.Store
	}{
		{"GapFreeUnderConcurrency", func(s im.Store) im.Store { return &reusesSeq{Store: s} }},
		{"MembershipWindows", func(s im.Store) im.Store { return keepsMembers{s} }},
		{"MarkersNeverGoBack", func(s im.Store) im.Store { return &forgetsMarks{Store: s} }},
	} {
		t.Run(tc.check, func(t *testing.T) {
			c := check(tc.check)
			if got := imtest.Failures(t, c, openBackend(t)); len(got) != 0 {
				t.Fatalf("the real backend fails %s: %q", tc.check, got)
			}
			b := openBackend(t)
			b.Store = tc.wrap(b.Store)
			got := imtest.Failures(t, c, b)
			if len(got) == 0 {
				t.Fatalf("%s passed a broken backend", tc.check)
			}
			t.Logf("%s reported: %q", tc.check, got[0])
		})
	}
}

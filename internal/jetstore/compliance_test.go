package jetstore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/imtest"
)

// TestExportQuery: an export by conversation, by user (their DMs, and
// groups within their membership) and by time range returns the stored
// events in seq order, rewritten ones (a delete under a hold) in their
// place, and walks past what retention removed.
func TestExportQuery(t *testing.T) {
	t.Parallel()
	b := openBackend(t)
	st := b.Store.(*Store)
	send := func(a *im.Append) *im.Append {
		t.Helper()
		if err := st.Append(a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	dm := im.DMConv("a", "b")
	t0 := b.Clock.Now().UnixMilli()
	for i := range 4 {
		send(&im.Append{CV: dm, To: []string{"a", "b"}, Event: im.Event{T: im.TMsg, From: "a", B: fmt.Sprint("m", i)},
			UserConvs: []im.UserConv{{UID: "a", CV: dm}, {UID: "b", CV: dm}}})
		b.Clock.Advance(time.Hour)
	}
	// The first message deleted under a hold: its body moves to the
	// delete's place in the log, its seq stays first.
	first := send(&im.Append{CV: dm, To: []string{"a"}, Event: im.Event{T: im.TMsg, From: "a", B: "late"}})
	send(&im.Append{CV: dm, To: []string{"a"}, Event: im.Event{T: im.TDel, From: "a", Tgt: &first.Event.ID},
		Purge: &im.Purge{ID: first.Event.ID, Keep: true}})
	// b is in group g:x from its second event to its third.
	send(&im.Append{CV: "g:x", To: []string{"c"}, Event: im.Event{T: im.TMsg, From: "c", B: "before"}})
	join := send(&im.Append{CV: "g:x", To: []string{"b", "c"}, Event: im.Event{T: im.TMember, From: "c"},
		Members: []im.MemberChange{{GID: "x", UID: "b", Rec: im.Member{Role: im.RoleMember}, SetFrom: true}}})
	send(&im.Append{CV: "g:x", To: []string{"b", "c"}, Event: im.Event{T: im.TMember, From: "c"},
		Members: []im.MemberChange{{GID: "x", UID: "b", Rec: im.Member{Role: im.RoleMember, From: join.Event.Seq}, SetTo: true}}})
	send(&im.Append{CV: "g:x", To: []string{"c"}, Event: im.Event{T: im.TMsg, From: "c", B: "after"}})

	export := func(q im.ExportQuery) []string {
		t.Helper()
		var out []string
		err := st.Export(q, func(ev *im.Event) error {
			out = append(out, fmt.Sprintf("%s/%d/%s", ev.CV, ev.Seq, ev.B))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := []string{dm + "/1/m0", dm + "/2/m1", dm + "/3/m2", dm + "/4/m3", dm + "/5/late", dm + "/6/"}
	for _, c := range []struct {
		name string
		q    im.ExportQuery
		want []string
	}{
		{"conversation", im.ExportQuery{CV: dm}, all},
		{"since", im.ExportQuery{CV: dm, Since: t0 + int64(time.Hour/time.Millisecond)}, all[1:]},
		{"until", im.ExportQuery{CV: dm, Until: t0 + int64(2*time.Hour/time.Millisecond)}, all[:2]},
		{"user b", im.ExportQuery{UID: "b"}, append(slices.Clone(all), "g:x/2/", "g:x/3/")},
		{"user b in g:x", im.ExportQuery{UID: "b", CV: "g:x"}, []string{"g:x/2/", "g:x/3/"}},
		{"everything", im.ExportQuery{}, append(slices.Clone(all), "g:x/1/before", "g:x/2/", "g:x/3/", "g:x/4/after")},
	} {
		if got := export(c.q); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	// Retention removes the first three messages: the walk starts past
	// them.
	if err := st.SetRetention(dm, time.Hour+30*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Trim(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := export(im.ExportQuery{CV: dm}); !slices.Equal(got, all[3:]) {
		t.Errorf("after retention: %q, want %q", got, all[3:])
	}
}

// TestTooManyHolds: once the hold list would outgrow its KV value, a new
// hold is refused with a named error (413 over the admin API) and the
// holds stored stay as they were. Not parallel: it lowers the bound.
func TestTooManyHolds(t *testing.T) {
	defer func(n int) { maxHoldsBytes = n }(maxHoldsBytes)
	maxHoldsBytes = 1000
	st := openBackend(t).Store.(*Store)
	n := 0
	for ; n < 100; n++ {
		_, err := st.AddHold(im.Hold{CV: "g:case", Reason: strings.Repeat("r", 100)})
		if errors.Is(err, ErrTooManyHolds) && errors.Is(err, im.ErrTooBig) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if hs, err := st.Holds(); err != nil || n == 0 || n == 100 || len(hs) != n {
		t.Fatalf("%d holds added, %d listed, %v", n, len(hs), err)
	}
}

// TestExportDuringDelete: a message deleted while an export of its
// conversation runs is exported once: in its place as it was when the
// export had read it already, else after the others as it is now. Not
// parallel: it sets exportStep.
func TestExportDuringDelete(t *testing.T) {
	st := openBackend(t).Store.(*Store)
	defer func() { exportStep = nil }()
	for _, c := range []struct {
		name string
		at   uint64 // delete when the export reaches this seq (0: between the walks)
		want []string
	}{
		{"between-walks", 0, []string{"2/m2", "3/m3", "4/", "1/"}},
		{"after-its-place", 1, []string{"1/m1", "2/m2", "3/m3", "4/"}},
	} {
		cv := "g:" + c.name
		var first ulid.ULID
		for i := 1; i <= 3; i++ {
			a := &im.Append{CV: cv, To: []string{"a"}, Event: im.Event{T: im.TMsg, From: "a", B: fmt.Sprint("m", i)}}
			if err := st.Append(a); err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				first = a.Event.ID
			}
		}
		deleted := false
		exportStep = func(got string, seq uint64) {
			if got != cv || seq != c.at || deleted {
				return
			}
			deleted = true
			del := &im.Append{CV: cv, To: []string{"a"}, Event: im.Event{T: im.TDel, From: "a", Tgt: &first},
				Purge: &im.Purge{ID: first}}
			if err := st.Append(del); err != nil {
				t.Error(err)
			}
		}
		var out []string
		err := st.Export(im.ExportQuery{CV: cv}, func(ev *im.Event) error {
			out = append(out, fmt.Sprintf("%d/%s", ev.Seq, ev.B))
			return nil
		})
		if err != nil || !deleted || !slices.Equal(out, c.want) {
			t.Errorf("%s: %q (deleted %v), %v; want %q", c.name, out, deleted, err, c.want)
		}
	}
}

// TestHoldsAcrossNodes: a hold placed through one node is seen by Held
// on another at once, and retentions likewise.
func TestHoldsAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers")
	}
	t.Parallel()
	nodes := startCluster(t)
	var stores []*Store
	for _, n := range nodes {
		stores = append(stores, openOn(t, n, 3, nil, nil))
	}
	ev := &im.Event{CV: "g:case", From: "a"}
	for i := range 5 {
		h, err := stores[i%3].AddHold(im.Hold{CV: "g:case", Reason: strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		if held, err := stores[(i+1)%3].Held(ev); err != nil || !held {
			t.Fatalf("hold %d through node %d, Held on node %d: %v %v", i, i%3+1, (i+1)%3+1, held, err)
		}
		if _, err := stores[(i+2)%3].RemoveHold(h.ID); err != nil {
			t.Fatal(err)
		}
		if held, err := stores[i%3].Held(ev); err != nil || held {
			t.Fatalf("removed hold %d still holds: %v %v", i, held, err)
		}
	}
	if err := stores[0].SetRetention("g:case", time.Hour); err != nil {
		t.Fatal(err)
	}
	if d, err := stores[2].Retention("g:case"); err != nil || d != time.Hour {
		t.Fatalf("retention through another node: %v %v", d, err)
	}
}

// forgotten collects what one node's trimmer removed.
type forgotten struct {
	node int
	ch   chan<- trimmedBy
}

// trimmedBy is one event a node's trimmer removed.
type trimmedBy struct {
	node int
	ev   im.Forgotten
}

func (f forgotten) Forget(evs []im.Forgotten) {
	for _, ev := range evs {
		f.ch <- trimmedBy{f.node, ev}
	}
}

// TestTrimmerOneNode: three nodes run the trimmer; the lease holder
// alone trims each expired event, exactly once, never a held one; when
// it dies (its server stops and its lease is not handed back), another
// node takes the lease over and trims what expires next; once the hold
// is lifted, the events it kept go too (its passes went on past them).
func TestTrimmerOneNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers")
	}
	t.Parallel()
	clk := imtest.NewClock()
	nodes := startCluster(t)
	ch := make(chan trimmedBy, 100)
	var stores []*Store
	var mu sync.Mutex
	files := map[string]string{} // fid → the trimmed message's id
	for i, n := range nodes {
		st := openOn(t, n, 3, clk.Now, nil)
		stores = append(stores, st)
		tr := st.StartTrimmer(TrimmerOptions{Node: fmt.Sprint("n", i+1), Retention: time.Hour,
			Every: 50 * time.Millisecond, Lease: 3 * time.Second, Forget: forgotten{node: i, ch: ch},
			Attachments: func(fid string, id ulid.ULID) {
				mu.Lock()
				defer mu.Unlock()
				if files[fid] != "" {
					t.Errorf("attachment %s reported twice", fid)
				}
				files[fid] = id.String()
			}})
		t.Cleanup(tr.Stop)
	}
	hold, err := stores[1].AddHold(im.Hold{CV: "g:held"})
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]string{} // fid → message id
	send := func(st *Store, cv string, n int) {
		t.Helper()
		for i := range n {
			ev := im.Event{T: im.TMsg, From: "u", B: fmt.Sprint(i), Att: []im.Att{{FID: fmt.Sprint(cv, "-", len(sent))}}}
			a := &im.Append{CV: cv, To: []string{"u"}, Event: ev}
			if err := st.Append(a); err != nil {
				t.Fatal(err)
			}
			sent[ev.Att[0].FID] = a.Event.ID.String()
		}
	}
	send(stores[0], "g:free", 5)
	send(stores[2], "g:held", 3)
	clk.Advance(2 * time.Hour)
	seen := map[string]bool{}
	wait := func(cv string, n int) int {
		t.Helper()
		node := -1
		for range n {
			select {
			case f := <-ch:
				if f.ev.CV != cv || seen[f.ev.ID.String()] {
					t.Fatalf("trimmed %s %s (again: %v)", f.ev.CV, f.ev.ID, seen[f.ev.ID.String()])
				}
				seen[f.ev.ID.String()] = true
				node = f.node
			case <-time.After(time.Minute):
				t.Fatalf("waited a minute for %d trimmed events; got %d", n, len(seen))
			}
		}
		return node
	}
	holder := wait("g:free", 5)
	// The holder dies without handing the lease back.
	nodes[holder].Shutdown()
	if err := stores[holder].Close(); err != nil {
		t.Fatal(err)
	}
	alive := stores[(holder+1)%3]
	send(alive, "g:free", 4)
	clk.Advance(2 * time.Hour)
	if next := wait("g:free", 4); next == holder {
		t.Fatalf("node %d trimmed after it died", holder+1)
	}
	if page, _, err := alive.History(im.HistoryQuery{CV: "g:held", Window: im.Open, Max: 10}); err != nil || len(page) != 3 {
		t.Fatalf("held conversation: %d events, %v", len(page), err)
	}
	if page, _, err := alive.History(im.HistoryQuery{CV: "g:free", Window: im.Open, Max: 10}); err != nil || len(page) != 0 {
		t.Fatalf("free conversation: %d events left, %v", len(page), err)
	}
	if _, err := alive.RemoveHold(hold.ID); err != nil {
		t.Fatal(err)
	}
	wait("g:held", 3)
	select {
	case f := <-ch:
		t.Fatalf("trimmed once more: %+v", f)
	default:
	}
	// Each trimmed message's file lost its reference, once.
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(files, sent) {
		t.Errorf("attachments reported %v, want %v", files, sent)
	}
}

// FuzzParseRetention: a retention record is a number of ms or an error,
// never a panic.
func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"3600000", "0", "-1", "", "1e9", "+5", "99999999999999999999", "9223372036854775"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		d, err := parseRetention(v)
		if err != nil {
			return
		}
		again, err := parseRetention([]byte(strconv.FormatInt(d.Milliseconds(), 10)))
		if d < 0 || err != nil || again != d {
			t.Fatalf("%q: %v, again %v %v", v, d, again, err)
		}
	})
}

// BenchmarkExportTrim appends n messages to one conversation on one
// embedded node, then exports them and trims them all in one pass:
// ns/op is per event (go test ./internal/jetstore -run x -bench
// ExportTrim -benchtime 1x).
func BenchmarkExportTrim(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprint("events=", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				be := openBackend(b)
				st := be.Store.(*Store)
				for i := range n {
					a := &im.Append{CV: "g:bench", To: []string{"u"}, Event: im.Event{T: im.TMsg, From: "u", B: fmt.Sprint("message ", i)}}
					if err := st.Append(a); err != nil {
						b.Fatal(err)
					}
				}
				be.Clock.Advance(2 * time.Hour)
				b.StartTimer()
				start := time.Now()
				count := 0
				if err := st.Export(im.ExportQuery{CV: "g:bench"}, func(*im.Event) error { count++; return nil }); err != nil || count != n {
					b.Fatalf("export: %d, %v", count, err)
				}
				exp := time.Since(start)
				start = time.Now()
				ts, err := st.Trim(be.Clock.Now().Add(-time.Hour))
				if err != nil || ts.Events != n {
					b.Fatalf("trim: %+v %v", ts, err)
				}
				b.ReportMetric(float64(exp.Microseconds())/float64(n), "export-us/event")
				b.ReportMetric(float64(time.Since(start).Microseconds())/float64(n), "trim-us/event")
			}
		})
	}
}

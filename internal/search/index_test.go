package search_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/internal/store"
)

type env struct {
	t   *testing.T
	dir string
	st  *store.Store
	x   *search.Index
}

func open(t *testing.T, o store.Options) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	var err error
	if e.st, err = store.Open(e.dir, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.st.Close(); err != nil {
			t.Error(err)
		}
	})
	e.x = e.index()
	return e
}

func (e *env) index() *search.Index {
	e.t.Helper()
	x, err := search.Open(filepath.Join(e.dir, "search"), search.Options{Source: e.st, Batch: 64, PruneEvery: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := x.Close(); err != nil {
			e.t.Error(err)
		}
	})
	return x
}

// send appends ev to cv and returns it as committed.
func (e *env) send(cv string, ev im.Event) im.Event {
	e.t.Helper()
	a := &im.Append{CV: cv, Event: ev}
	if err := e.st.Append(a); err != nil {
		e.t.Fatal(err)
	}
	return a.Event
}

func (e *env) msg(cv, from, b string) im.Event {
	return e.send(cv, im.Event{T: im.TMsg, From: from, B: b})
}

func (e *env) catchUp() {
	e.t.Helper()
	if _, err := e.x.CatchUp(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// find runs q over all of the given conversations and returns the bodies
// of the hits' events... as ids.
func (e *env) find(q string, convs ...im.ConvWindow) []im.Hit {
	e.t.Helper()
	terms, err := im.ParseSearch(q)
	if err != nil {
		e.t.Fatal(err)
	}
	hits, _, err := e.x.Search(im.SearchQuery{Terms: terms, Convs: convs, Max: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	return hits
}

func ids(hits []im.Hit) []ulid.ULID {
	out := make([]ulid.ULID, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

func open1(cv string) im.ConvWindow { return im.ConvWindow{CV: cv, Window: im.Open} }

func TestIndexMatching(t *testing.T) {
	t.Parallel()
	e := open(t, store.Options{})
	const cv = "d:alice:bob"
	cafe := e.msg(cv, "alice", "Rendez-vous au Café de Flore à midi")
	lunch := e.msg(cv, "bob", "lunch at the cafe? the blue door")
	door := e.msg(cv, "alice", "the door is blue")
	street := e.msg(cv, "bob", "Große Straße, Æsir")
	e2e := e.send(cv, im.Event{T: im.TMsg, From: "bob", CT: im.CTE2EE, B: "cafe secret"})
	e.catchUp()
	if e.x.Cursor() != e2e.ID {
		t.Fatalf("cursor %s, want the last event %s", e.x.Cursor(), e2e.ID)
	}
	for _, c := range []struct {
		q    string
		want []ulid.ULID
	}{
		{"CAFÉ", []ulid.ULID{lunch.ID, cafe.ID}},            // case and accents, newest first
		{"cafe flore", []ulid.ULID{cafe.ID}},                // all words
		{`"blue door"`, []ulid.ULID{lunch.ID}},              // phrase in order
		{`"door blue"`, nil},                                // not in that order
		{"door from:alice", []ulid.ULID{door.ID}},           // sender
		{"from:bob", []ulid.ULID{street.ID, lunch.ID}},      // sender alone; E2EE never
		{"strasse aesir", []ulid.ULID{street.ID}},           // ß → ss, Æ → ae
		{"secret", nil},                                     // E2EE never indexed
		{"rendez-vous", []ulid.ULID{cafe.ID}},               // a word of two tokens is a phrase
		{"!!", nil},                                         // no letters: nothing
		{"door from:carol from:bob", []ulid.ULID{lunch.ID}}, // any of the senders
	} {
		if got := ids(e.find(c.q, open1(cv))); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %v, want %v", c.q, got, c.want)
		}
	}
	hl := e.find("cafe", open1(cv))
	if len(hl) != 2 || !strings.Contains(hl[1].HL, "<mark>Café</mark>") {
		t.Errorf("snippet of %q: %+v", "cafe", hl)
	}
	if got := e.find("cafe", open1("d:alice:carol")); len(got) != 0 {
		t.Errorf("another conversation matched: %v", got)
	}
}

func TestIndexWindowEditDelete(t *testing.T) {
	t.Parallel()
	e := open(t, store.Options{})
	const cv = "g:ops"
	var evs []im.Event
	for i := range 6 {
		evs = append(evs, e.msg(cv, "alice", "deploy step "+string(rune('a'+i))))
	}
	e.catchUp()
	// Window [3, 5]: the index matches whole blocks of 1,024 seqs (the
	// caller checks the exact seq), so all six, which share block 0.
	got := ids(e.find("deploy", im.ConvWindow{CV: cv, Window: im.Window{From: 3, To: 5}}))
	want := []ulid.ULID{evs[5].ID, evs[4].ID, evs[3].ID, evs[2].ID, evs[1].ID, evs[0].ID}
	if !slices.Equal(got, want) {
		t.Fatalf("window: got %v, want %v", got, want)
	}
	// Edit re-indexes; delete removes; an edit after the delete does not
	// bring it back; an edit and delete in the same batch as the message.
	e.send(cv, im.Event{T: im.TEdit, From: "alice", Tgt: &evs[0].ID, B: "rollback now"})
	e.send(cv, im.Event{T: im.TDel, From: "alice", Tgt: &evs[1].ID})
	e.send(cv, im.Event{T: im.TEdit, From: "alice", Tgt: &evs[1].ID, B: "rollback again"})
	late := e.msg(cv, "alice", "deploy late")
	e.send(cv, im.Event{T: im.TEdit, From: "alice", Tgt: &late.ID, B: "rollback late"})
	e.catchUp()
	if got := ids(e.find("rollback", open1(cv))); !slices.Equal(got, []ulid.ULID{late.ID, evs[0].ID}) {
		t.Errorf("rollback: got %v", got)
	}
	if got := ids(e.find("deploy", open1(cv))); !slices.Equal(got, []ulid.ULID{evs[5].ID, evs[4].ID, evs[3].ID, evs[2].ID}) {
		t.Errorf("deploy after edit and delete: got %v", got)
	}
	// Paging with Before.
	terms, _ := im.ParseSearch("deploy")
	page, more, err := e.x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{open1(cv)}, Max: 3})
	if err != nil || !more || len(page) != 3 {
		t.Fatalf("page 1: %v, more %v, %v", ids(page), more, err)
	}
	page2, more, err := e.x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{open1(cv)}, Max: 3, Before: page[2].ID})
	if err != nil || more || !slices.Equal(ids(page2), []ulid.ULID{evs[2].ID}) {
		t.Fatalf("page 2: %v, more %v, %v", ids(page2), more, err)
	}
}

func TestIndexJoinedAndRestart(t *testing.T) {
	t.Parallel()
	e := open(t, store.Options{})
	e.send("g:ops", im.Event{T: im.TMember, Op: "add", Who: []string{"alice", "bob"}})
	e.send("g:ops", im.Event{T: im.TMember, Op: "leave", Who: []string{"bob"}})
	e.send("g:dev", im.Event{T: im.TMember, Op: "add", Who: []string{"bob"}})
	e.catchUp()
	got, err := e.x.Joined("bob")
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"g:dev", "g:ops"}) {
		t.Fatalf("Joined(bob) = %v, %v", got, err)
	}
	// Events committed while the index is closed are indexed after it
	// reopens, from its stored cursor: Close wrote what bleve held only
	// in memory, cursor included.
	indexed := e.x.Cursor()
	if err := e.x.Close(); err != nil {
		t.Fatal(err)
	}
	m := e.msg("g:ops", "alice", "written while the index was closed")
	e.x = e.index()
	if got := e.x.Cursor(); got != indexed {
		t.Fatalf("reopened index at %s, closed at %s", got, indexed)
	}
	e.x.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.x.Wait(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if got := ids(e.find("closed", open1("g:ops"))); !slices.Equal(got, []ulid.ULID{m.ID}) {
		t.Errorf("after restart: %v", got)
	}
}

func TestIndexPrune(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clock := func() time.Time { return now }
	e := open(t, store.Options{Now: clock})
	const cv = "d:alice:bob"
	old := e.msg(cv, "alice", "ancient words")
	now = now.Add(3 * 24 * time.Hour)
	fresh := e.msg(cv, "alice", "fresh words")
	ttl := e.send(cv, im.Event{T: im.TMsg, From: "alice", B: "vanishing words", TTL: 60})
	x, err := search.Open(filepath.Join(e.dir, "search2"), search.Options{Source: e.st, Batch: 10, PruneEvery: time.Hour, Retention: 2 * 24 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := x.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The old message is past the retention; the disappearing one goes
	// once the day of its expiry is over.
	n, err := x.Prune()
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want the old message", n, err)
	}
	now = now.Add(2 * 24 * time.Hour)
	n, err = x.Prune()
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want the expired message", n, err)
	}
	terms, _ := im.ParseSearch("words")
	hits, _, err := x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{open1(cv)}, Max: 10})
	if err != nil || !slices.Equal(ids(hits), []ulid.ULID{fresh.ID}) {
		t.Fatalf("after prune: %v, %v (old %s, ttl %s)", ids(hits), err, old.ID, ttl.ID)
	}
}

// FuzzSearch: any parsed query runs against an index without an error
// or a panic, and hits only the conversation asked for.
func FuzzSearch(f *testing.F) {
	for _, s := range []string{"cafe", `"blue door"`, "from:bob x", "!!", "e-mail", "ß", "\u0301", `"a`, "日本語 テキスト"} {
		f.Add(s)
	}
	dir := f.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	for _, b := range []string{"Café au lait", "the blue door", "e-mail me", "straße", "日本語のテキスト"} {
		for _, cv := range []string{"d:alice:bob", "d:alice:carol"} {
			if err := st.Append(&im.Append{CV: cv, Event: im.Event{T: im.TMsg, From: "bob", B: b}}); err != nil {
				f.Fatal(err)
			}
		}
	}
	x, err := search.Open(filepath.Join(dir, "search"), search.Options{Source: st, Batch: 100, PruneEvery: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	defer x.Close()
	if _, err := x.CatchUp(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		terms, err := im.ParseSearch(q)
		if err != nil {
			return
		}
		hits, _, err := x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{open1("d:alice:bob")}, Max: 20})
		if err != nil {
			t.Fatalf("Search(%q): %v", q, err)
		}
		for _, h := range hits {
			ev, err := st.EventByID(h.ID)
			if err != nil || ev.CV != "d:alice:bob" {
				t.Fatalf("Search(%q): hit %s in %q, %v", q, h.ID, ev.CV, err)
			}
		}
	})
}

// TestLookBack: a search over messages spread across months gives the
// same pages, newest first, whether it looks back in windows (a common
// word) or in one open search (a rare one), from any before.
func TestLookBack(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	e := open(t, store.Options{Now: clock})
	var want []ulid.ULID
	for i := range 45 {
		mu.Lock()
		now = now.Add(5 * 24 * time.Hour) // 225 days in all
		mu.Unlock()
		if i%9 == 4 {
			mu.Lock()
			now = now.Add(-3 * time.Hour) // some days hold two
			mu.Unlock()
			e.msg("g:ops", "alice", "noise")
		}
		want = append(want, e.msg("g:ops", "alice", fmt.Sprintf("tick %d", i)).ID)
	}
	slices.Reverse(want)
	x, err := search.Open(filepath.Join(e.dir, "search-lb"), search.Options{Source: e.st, Batch: 16, PruneEvery: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := x.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	terms, _ := im.ParseSearch("tick")
	for _, rare := range []uint64{0, math.MaxUint64} {
		x.SetRare(rare)
		for _, max := range []int{1, 7, 100} {
			var got []ulid.ULID
			var before ulid.ULID
			for range 50 {
				hits, more, err := x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{open1("g:ops")}, Max: max, Before: before})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ids(hits)...)
				if !more {
					break
				}
				before = hits[len(hits)-1].ID
			}
			if !slices.Equal(got, want) {
				t.Errorf("rare %d, max %d: %d hits in this order, want the %d newest first", rare, max, len(got), len(want))
			}
		}
	}
}

// TestIndexWindowBlocks: a window matches the blocks it touches and no
// other: with 2,100 messages, [1030, 2050] covers blocks 1 and 2 (seqs
// 1,024–3,071), so seqs 1,024–2,100 and none below; an open upper end
// runs to the newest; [1, 1023] is block 0 only.
func TestIndexWindowBlocks(t *testing.T) {
	t.Parallel()
	e := open(t, store.Options{})
	const cv = "g:big"
	as := make([]*im.Append, 2100)
	for i := range as {
		as[i] = &im.Append{CV: cv, Event: im.Event{T: im.TMsg, From: "alice", B: "note " + strconv.Itoa(i+1)}}
	}
	if err := e.st.Append(as...); err != nil {
		t.Fatal(err)
	}
	e.catchUp()
	seqs := func(w im.Window) (lo, hi uint64, n int) {
		t.Helper()
		terms, err := im.ParseSearch("note")
		if err != nil {
			t.Fatal(err)
		}
		hits, _, err := e.x.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{{CV: cv, Window: w}}, Max: 5000})
		if err != nil {
			t.Fatal(err)
		}
		lo = math.MaxUint64
		for _, h := range hits {
			ev, err := e.st.EventByID(h.ID)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi = min(lo, ev.Seq), max(hi, ev.Seq)
		}
		return lo, hi, len(hits)
	}
	for _, c := range []struct {
		w         im.Window
		lo, hi, n uint64
	}{
		{im.Window{From: 1030, To: 2050}, 1024, 2100, 1077},
		{im.Window{From: 1030}, 1024, 2100, 1077},
		{im.Window{From: 1, To: 1023}, 1, 1023, 1023},
		{im.Window{From: 2049}, 2048, 2100, 53},
	} {
		lo, hi, n := seqs(c.w)
		if lo != c.lo || hi != c.hi || uint64(n) != c.n {
			t.Errorf("window %+v: seqs %d–%d (%d hits), want %d–%d (%d)", c.w, lo, hi, n, c.lo, c.hi, c.n)
		}
	}
}

// TestIndexOlderSchemaRebuilt: an index written by an older version (no
// schema key) is rebuilt from the store at Open.
func TestIndexOlderSchemaRebuilt(t *testing.T) {
	t.Parallel()
	e := open(t, store.Options{})
	const cv = "d:alice:bob"
	m := e.msg(cv, "alice", "rebuild me")
	e.catchUp()
	if err := e.x.DeleteInternalForTest([]byte("schema")); err != nil {
		t.Fatal(err)
	}
	if err := e.x.Close(); err != nil {
		t.Fatal(err)
	}
	e.x = e.index()
	if got := e.x.Cursor(); got != (ulid.ULID{}) {
		t.Fatalf("cursor after rebuild: %s, want zero", got)
	}
	e.catchUp()
	if got := ids(e.find("rebuild", open1(cv))); !slices.Equal(got, []ulid.ULID{m.ID}) {
		t.Fatalf("after rebuild: got %v", got)
	}
}

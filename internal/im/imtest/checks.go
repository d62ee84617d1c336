package imtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// gapFree: many goroutines append to overlapping conversations at once.
// Every conversation's seqs and every user's us are 1..n, each handed out
// once; streams read back in us order with the events as appended; ids
// increase with seq; the commit stream carries each user's events in
// stream order.
func gapFree(t testing.TB, b Backend) {
	stop := consume(b)
	const writers, per = 8, 30
	users := []string{"u0", "u1", "u2", "u3"}
	convs := map[string][]string{
		"g:c0": {"u0", "u1"}, "g:c1": {"u1", "u2", "u3"}, "g:c2": {"u0", "u1", "u2", "u3"},
	}
	names := []string{"g:c0", "g:c1", "g:c2"}
	var mu sync.Mutex
	seqs := map[string][]uint64{}
	uss := map[string][]uint64{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				cv := names[(w+i)%len(names)]
				a := msg(cv, convs[cv], "u0")
				if err := appendOne(b, a); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				seqs[cv] = append(seqs[cv], a.Event.Seq)
				for j, u := range a.To {
					uss[u] = append(uss[u], a.US[j])
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	commits := stop()
	for cv, s := range seqs {
		if !oneToN(s) {
			t.Errorf("%s: seqs %v are not 1..%d each once", cv, sorted(s), len(s))
		}
		if n, err := b.Store.ConvSeq(cv); err != nil || n != uint64(len(s)) {
			t.Errorf("%s: ConvSeq %d, %v; want %d", cv, n, err, len(s))
		}
		page, complete, err := b.Store.History(im.HistoryQuery{CV: cv, Window: im.Open, Max: 1000})
		if err != nil || !complete || len(page) != len(s) {
			t.Errorf("%s: history %d events, complete %v, %v; want %d", cv, len(page), complete, err, len(s))
			continue
		}
		for i, ev := range page {
			if ev.Seq != uint64(i+1) || ev.CV != cv || (i > 0 && (ev.ID.Compare(page[i-1].ID) <= 0 || ev.TS < page[i-1].TS)) {
				t.Errorf("%s: history event %d: seq %d cv %s, ids or ts not increasing", cv, i, ev.Seq, ev.CV)
				break
			}
		}
	}
	for _, u := range users {
		if !oneToN(uss[u]) {
			t.Errorf("%s: us %v are not 1..%d each once", u, sorted(uss[u]), len(uss[u]))
		}
		evs, more, err := b.Store.Stream(u, 0, 10000)
		if err != nil || more || len(evs) != len(uss[u]) {
			t.Errorf("%s: stream %d events, more %v, %v; want %d", u, len(evs), more, err, len(uss[u]))
			continue
		}
		for i, ev := range evs {
			if ev.US != uint64(i+1) || ev.Seq == 0 || ev.T != im.TMsg {
				t.Errorf("%s: stream event %d has us %d seq %d t %q", u, i, ev.US, ev.Seq, ev.T)
				break
			}
		}
		if h, err := b.Store.USHead(u); err != nil || h != uint64(len(uss[u])) {
			t.Errorf("%s: USHead %d, %v; want %d", u, h, err, len(uss[u]))
		}
	}
	if b.Commits != nil {
		// Every recipient of every append once; each user's us in order
		// (a user's events share a lane, and got keeps each lane's order).
		seen := map[*im.Append]int{}
		last := map[string]uint64{}
		for _, d := range commits {
			for _, j := range d.Idx {
				u := d.A.To[j]
				seen[d.A]++
				if d.A.US[j] <= last[u] {
					t.Errorf("commit stream: %s got us %d after %d", u, d.A.US[j], last[u])
				}
				last[u] = d.A.US[j]
			}
		}
		if len(seen) != writers*per {
			t.Errorf("commit stream carried %d appends, want %d", len(seen), writers*per)
		}
		for a, n := range seen {
			if n != len(a.To) {
				t.Errorf("commit stream delivered %d of the %d recipients of an append", n, len(a.To))
				break
			}
		}
	}
}

// dedupe: a repeated (uid, did, cmid) commits nothing and returns the
// original, also when the repeats race.
func dedupe(t testing.TB, b Backend) {
	defer consume(b)()
	send := func(cmid string) *im.Append {
		a := msg("d:a:b", []string{"a", "b"}, "a")
		a.UID, a.DID, a.CMID = "a", "p1", cmid
		return a
	}
	first := mustAppend(t, b, send("c1"))
	if !first.Committed() || first.Dup != nil {
		t.Fatalf("first append: committed %v, dup %v", first.Committed(), first.Dup)
	}
	again := mustAppend(t, b, send("c1"))
	if again.Committed() || again.Dup == nil {
		t.Fatalf("repeat: committed %v, dup %v", again.Committed(), again.Dup)
	}
	if again.Dup.ID != first.Event.ID || again.Dup.Seq != first.Event.Seq || again.Dup.US != first.US[0] {
		t.Errorf("repeat returned id %s seq %d us %d, want %s %d %d", again.Dup.ID, again.Dup.Seq, again.Dup.US,
			first.Event.ID, first.Event.Seq, first.US[0])
	}
	if ev, err := b.Store.Deduped("a", "p1", "c1"); err != nil || ev.ID != first.Event.ID {
		t.Errorf("Deduped: %s, %v", ev.ID, err)
	}
	if _, err := b.Store.Deduped("a", "p2", "c1"); !errors.Is(err, im.ErrNotFound) {
		t.Errorf("Deduped of another device: %v, want ErrNotFound", err)
	}
	// Racing repeats of one new command: exactly one commits.
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := send("c2")
			if err := appendOne(b, a); err != nil {
				t.Errorf("append: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if a.Committed() {
				committed++
			}
		}()
	}
	wg.Wait()
	if committed != 1 {
		t.Errorf("%d of 8 racing repeats committed, want 1", committed)
	}
	if n, err := b.Store.ConvSeq("d:a:b"); err != nil || n != 2 {
		t.Errorf("ConvSeq %d, %v; want 2", n, err)
	}
	if h, err := b.Store.USHead("b"); err != nil || h != 2 {
		t.Errorf("USHead(b) %d, %v; want 2", h, err)
	}
}

// windows: a member's window starts at the event that added them and
// ends at the one that removed them; History clips to a window.
func windows(t testing.TB, b Backend) {
	defer consume(b)()
	const gid, cv = "g1", "g:g1"
	g := im.Group{GID: gid, Owner: "a", V: 1, N: 2}
	add := &im.Append{CV: cv, To: []string{"a", "b"}, Group: &g,
		Event: im.Event{T: im.TMember, Op: "add", Who: []string{"a", "b"}, By: "a"},
		Members: []im.MemberChange{
			{GID: gid, UID: "a", Rec: im.Member{Role: im.RoleOwner}, SetFrom: true},
			{GID: gid, UID: "b", Rec: im.Member{Role: im.RoleMember}, SetFrom: true},
		},
		UserConvs: []im.UserConv{{UID: "a", CV: cv}, {UID: "b", CV: cv}},
	}
	mustAppend(t, b, add)
	for range 3 {
		mustAppend(t, b, msg(cv, []string{"a", "b"}, "a"))
	}
	rb, err := b.Store.Member(gid, "b")
	if err != nil || rb.From != add.Event.Seq || !rb.Current() {
		t.Fatalf("b's record %+v, %v; want From %d, current", rb, err, add.Event.Seq)
	}
	remove := mustAppend(t, b, &im.Append{CV: cv, To: []string{"a", "b"},
		Event:     im.Event{T: im.TMember, Op: "remove", Who: []string{"b"}, By: "a"},
		Members:   []im.MemberChange{{GID: gid, UID: "b", Rec: rb, SetTo: true}},
		UserConvs: []im.UserConv{{UID: "b", CV: cv, Remove: true}},
	})
	for range 2 {
		mustAppend(t, b, msg(cv, []string{"a"}, "a"))
	}
	rb, err = b.Store.Member(gid, "b")
	if err != nil || rb.Current() || rb.To != remove.Event.Seq || rb.From != add.Event.Seq {
		t.Fatalf("b's record after removal %+v, %v; want From %d To %d", rb, err, add.Event.Seq, remove.Event.Seq)
	}
	recs, order, err := b.Store.Members(gid)
	if err != nil || !slices.Equal(order, []string{"a"}) || recs["a"].Role != im.RoleOwner {
		t.Errorf("Members: %v %v, %v", order, recs, err)
	}
	if gs, err := b.Store.Groups("b"); err != nil || len(gs) != 0 {
		t.Errorf("Groups(b) after removal: %v, %v", gs, err)
	}
	if gs, err := b.Store.Groups("a"); err != nil || !slices.Equal(gs, []string{gid}) {
		t.Errorf("Groups(a): %v, %v", gs, err)
	}
	if got, err := b.Store.Group(gid); err != nil || got.Owner != "a" {
		t.Errorf("Group: %+v, %v", got, err)
	}
	page, complete, err := b.Store.History(im.HistoryQuery{CV: cv, Window: rb.Window(), Max: 100})
	if err != nil || !complete || len(page) != int(rb.To-rb.From+1) || page[0].Seq != rb.From || page[len(page)-1].Seq != rb.To {
		t.Errorf("history in b's window %+v: %d events, complete %v, %v", rb.Window(), len(page), complete, err)
	}
	page, _, err = b.Store.History(im.HistoryQuery{CV: cv, Window: rb.Window(), After: rb.From, Max: 2})
	if err != nil || len(page) != 2 || page[0].Seq != rb.From+1 {
		t.Errorf("history after %d in b's window: %d events, %v", rb.From, len(page), err)
	}
	page, _, err = b.Store.History(im.HistoryQuery{CV: cv, Window: rb.Window(), Before: rb.To, Max: 1})
	if err != nil || len(page) != 1 || page[0].Seq != rb.To-1 {
		t.Errorf("history before %d in b's window: %v, %v", rb.To, page, err)
	}
	if _, err := b.Store.Member(gid, "c"); !errors.Is(err, im.ErrNotFound) {
		t.Errorf("Member of a stranger: %v, want ErrNotFound", err)
	}
}

// markers: a marker is the largest Upto ever appended.
func markers(t testing.TB, b Backend) {
	defer consume(b)()
	for range 8 {
		mustAppend(t, b, msg("d:a:b", []string{"a", "b"}, "a"))
	}
	mark := func(upto uint64) {
		mustAppend(t, b, &im.Append{CV: "d:a:b", Aux: true, To: []string{"a", "b"},
			Event:   im.Event{T: im.TMark, From: "b", K: "read", Upto: upto},
			Markers: []im.Marker{{CV: "d:a:b", UID: "b", K: "read", Upto: upto}},
		})
	}
	for _, c := range []struct{ upto, want uint64 }{{5, 5}, {3, 5}, {7, 7}, {6, 7}} {
		mark(c.upto)
		if got, err := b.Store.Marker("d:a:b", "b", "read"); err != nil || got != c.want {
			t.Errorf("after a mark at %d: marker %d, %v; want %d", c.upto, got, err, c.want)
		}
	}
	if got, err := b.Store.Marker("d:a:b", "b", "dlv"); err != nil || got != 0 {
		t.Errorf("unset marker: %d, %v", got, err)
	}
	// Aux events take stream positions but no conversation seq.
	if n, err := b.Store.ConvSeq("d:a:b"); err != nil || n != 8 {
		t.Errorf("ConvSeq %d, %v; want 8", n, err)
	}
	if h, err := b.Store.USHead("a"); err != nil || h != 12 {
		t.Errorf("USHead(a) %d, %v; want 12", h, err)
	}
}

// retention: trimming removes old events, a cursor before the floor
// gets ErrTrimmed (the device starts over), and positions continue.
func retention(t testing.TB, b Backend) {
	defer consume(b)()
	if b.Clock == nil || b.Trim == nil {
		t.Fatal("the backend needs a Clock and Trim")
	}
	for range 3 {
		mustAppend(t, b, msg("d:a:b", []string{"a", "b"}, "a"))
	}
	b.Clock.Advance(2 * time.Hour)
	for range 2 {
		mustAppend(t, b, msg("d:a:b", []string{"a", "b"}, "a"))
	}
	if err := b.Trim(b.Clock.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("trim: %v", err)
	}
	if _, _, err := b.Store.Stream("b", 0, 100); !errors.Is(err, im.ErrTrimmed) {
		t.Errorf("stream from 0 after trimming 3: %v, want ErrTrimmed", err)
	}
	evs, more, err := b.Store.Stream("b", 3, 100)
	if err != nil || more || len(evs) != 2 || evs[0].US != 4 {
		t.Errorf("stream from 3: %d events, more %v, %v", len(evs), more, err)
	}
	page, _, err := b.Store.History(im.HistoryQuery{CV: "d:a:b", Window: im.Open, Max: 100})
	if err != nil || len(page) != 2 || page[0].Seq != 4 {
		t.Errorf("history after trimming: %d events, %v", len(page), err)
	}
	if h, err := b.Store.USHead("b"); err != nil || h != 5 {
		t.Errorf("USHead after trimming: %d, %v; want 5", h, err)
	}
	a := mustAppend(t, b, msg("d:a:b", []string{"a", "b"}, "a"))
	if a.Event.Seq != 6 || a.US[1] != 6 {
		t.Errorf("append after trimming: seq %d us %d, want 6 6", a.Event.Seq, a.US[1])
	}
}

// heads: USHead never goes backwards and is never behind an append that
// has returned.
func heads(t testing.TB, b Backend) {
	defer consume(b)()
	const writers, per = 4, 40
	var wg sync.WaitGroup
	quit := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var last uint64
			for {
				select {
				case <-quit:
					return
				default:
				}
				h, err := b.Store.USHead("u")
				if err != nil {
					t.Errorf("USHead: %v", err)
					return
				}
				if h < last {
					t.Errorf("USHead went back from %d to %d", last, h)
					return
				}
				last = h
			}
		}()
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				a := msg(fmt.Sprintf("g:h%d", w), []string{"u", fmt.Sprint("w", w)}, "u")
				if err := appendOne(b, a); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				if h, err := b.Store.USHead("u"); err != nil || h < a.US[0] {
					t.Errorf("USHead %d, %v right after an append got us %d", h, err, a.US[0])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(quit)
	readers.Wait()
	if h, err := b.Store.USHead("u"); err != nil || h != writers*per {
		t.Errorf("final USHead %d, %v; want %d", h, err, writers*per)
	}
}

// contacts: the roster and blocks, both directions.
func contacts(t testing.TB, b Backend) {
	st := b.Store
	for _, step := range []error{
		st.SetContact("a", "b", true), st.SetContact("a", "c", true), st.SetContact("a", "c", false),
		st.SetBlock("c", "a", true),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if cs, err := st.Contacts("a"); err != nil || !slices.Equal(cs, []string{"b"}) {
		t.Errorf("Contacts(a): %v, %v", cs, err)
	}
	if ok, err := st.IsContact("a", "b"); err != nil || !ok {
		t.Errorf("IsContact(a, b): %v, %v", ok, err)
	}
	if bs, err := st.BlockedBy("a"); err != nil || !slices.Equal(bs, []string{"c"}) {
		t.Errorf("BlockedBy(a): %v, %v", bs, err)
	}
	if bs, err := st.Blocked("c"); err != nil || !slices.Equal(bs, []string{"a"}) {
		t.Errorf("Blocked(c): %v, %v", bs, err)
	}
	for _, p := range [][2]string{{"a", "c"}, {"c", "a"}} {
		if _, blocked, err := st.DMPeer(p[0], p[1]); err != nil || !blocked {
			t.Errorf("DMPeer(%s, %s): blocked %v, %v", p[0], p[1], blocked, err)
		}
	}
	if err := st.SetBlock("c", "a", false); err != nil {
		t.Fatal(err)
	}
	if blocked, err := st.Blocks("c", "a"); err != nil || blocked {
		t.Errorf("Blocks after unblock: %v, %v", blocked, err)
	}
}

func oneToN(s []uint64) bool {
	x := sorted(s)
	for i, v := range x {
		if v != uint64(i+1) {
			return false
		}
	}
	return true
}

func sorted(s []uint64) []uint64 {
	x := slices.Clone(s)
	slices.Sort(x)
	return x
}

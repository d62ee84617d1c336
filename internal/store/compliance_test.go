package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// forgets records what the store tells its Forgetter.
type forgets struct {
	mu sync.Mutex
	fs []im.Forgotten
}

func (f *forgets) Forget(fs []im.Forgotten) { f.mu.Lock(); f.fs = append(f.fs, fs...); f.mu.Unlock() }
func (f *forgets) take() []im.Forgotten {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.fs
	f.fs = nil
	return out
}

func openCompliance(t *testing.T) (*Store, *clock, *forgets) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	fg := &forgets{}
	s, err := Open(t.TempDir(), Options{Now: clk.Now, Forget: fg, TrimEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk, fg
}

func appendMsg(t *testing.T, s *Store, cv, from, body string) *im.Append {
	t.Helper()
	a := &im.Append{CV: cv, To: []string{from}, Event: codec.Event{T: codec.TMsg, From: from, B: body,
		Att: []im.Att{{FID: "01M8EB8TNAG20YCP61RCGW5ZCF"}}}}
	if err := s.Append(a); err != nil {
		t.Fatal(err)
	}
	return a
}

func bodies(t *testing.T, s *Store, cv string) []string {
	t.Helper()
	items, _, err := s.History(im.HistoryQuery{CV: cv, Window: im.Open, Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range items {
		out = append(out, ev.B)
	}
	return out
}

func exported(t *testing.T, s *Store, q im.ExportQuery) []codec.Event {
	t.Helper()
	var out []codec.Event
	if err := s.Export(q, func(ev *im.Event) error { out = append(out, *ev); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConvRetention: without a server default, a conversation's own
// retention trims its events (and their id index) once they are older,
// tells the Forgetter, and leaves other conversations alone; removing
// the retention stops it; a legal hold keeps what it covers.
func TestConvRetention(t *testing.T) {
	t.Parallel()
	s, clk, fg := openCompliance(t)
	a1 := appendMsg(t, s, "g:short", "alice", "old short")
	appendMsg(t, s, "g:long", "alice", "old long")
	h1 := appendMsg(t, s, "g:held", "bob", "old held")
	if err := s.SetRetention("g:short", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRetention("g:held", time.Hour); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Retention("g:short"); err != nil || d != time.Hour {
		t.Fatalf("retention %v %v", d, err)
	}
	hold, err := s.AddHold(im.Hold{CV: "g:held", Reason: "case 7"})
	if err != nil || hold.ID == "" || hold.Created == 0 {
		t.Fatalf("hold %+v %v", hold, err)
	}
	clk.Add(2 * time.Hour)
	appendMsg(t, s, "g:short", "alice", "new short")
	st, err := s.Trim(time.Time{}) // no server default
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 1 || st.IDs != 1 {
		t.Errorf("trim stats %+v, want one event", st)
	}
	if got := bodies(t, s, "g:short"); !slices.Equal(got, []string{"new short"}) {
		t.Errorf("g:short kept %q", got)
	}
	if got := bodies(t, s, "g:long"); !slices.Equal(got, []string{"old long"}) {
		t.Errorf("g:long kept %q", got)
	}
	if got := bodies(t, s, "g:held"); !slices.Equal(got, []string{"old held"}) {
		t.Errorf("held g:held kept %q", got)
	}
	if _, err := s.EventByID(a1.Event.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("trimmed event by id: %v", err)
	}
	if _, err := s.EventByID(h1.Event.ID); err != nil {
		t.Errorf("held event by id: %v", err)
	}
	if fs := fg.take(); len(fs) != 1 || fs[0].ID != a1.Event.ID || fs[0].CV != "g:short" || len(fs[0].Att) != 1 || fs[0].Deleted {
		t.Errorf("forgotten %+v", fs)
	}
	// The hold removed: the next pass trims it.
	if _, err := s.RemoveHold(hold.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveHold(hold.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	if _, err := s.Trim(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, s, "g:held"); len(got) != 0 {
		t.Errorf("g:held after the hold: %q", got)
	}
	// With the server default, a longer conversation retention wins.
	if err := s.SetRetention("g:long", 10*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Trim(clk.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, s, "g:long"); !slices.Equal(got, []string{"old long"}) {
		t.Errorf("g:long under a 10h retention kept %q", got)
	}
	if err := s.SetRetention("g:long", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Trim(clk.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, s, "g:long"); len(got) != 0 {
		t.Errorf("g:long back on the default kept %q", got)
	}
}

// TestUserHoldKeepsDMAndAuthored: a hold on a user covers their DMs and
// what they wrote in groups, under the server default retention.
func TestUserHoldKeepsDMAndAuthored(t *testing.T) {
	t.Parallel()
	s, clk, _ := openCompliance(t)
	appendMsg(t, s, "d:alice:bob", "bob", "dm to alice")
	appendMsg(t, s, "d:bob:carol", "bob", "dm to carol")
	appendMsg(t, s, "g:ops", "alice", "alice in ops")
	appendMsg(t, s, "g:ops", "bob", "bob in ops")
	if _, err := s.AddHold(im.Hold{UID: "alice"}); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	if _, err := s.Trim(clk.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	for cv, want := range map[string][]string{
		"d:alice:bob": {"dm to alice"}, "d:bob:carol": nil, "g:ops": {"alice in ops"},
	} {
		if got := bodies(t, s, cv); !slices.Equal(got, want) {
			t.Errorf("%s kept %q, want %q", cv, got, want)
		}
	}
}

// TestPurge: a delete without a hold removes the bodies of the message
// and of its edits from the store (a tombstone stays, marked deleted);
// with a hold users still see only the tombstone, but Export has the
// bodies. The Forgetter hears of both.
func TestPurge(t *testing.T) {
	t.Parallel()
	s, _, fg := openCompliance(t)
	for _, keep := range []bool{false, true} {
		cv := fmt.Sprintf("g:keep-%v", keep)
		m := appendMsg(t, s, cv, "alice", "secret plan")
		id := m.Event.ID
		edit := &im.Append{CV: cv, To: []string{"alice"}, Event: codec.Event{T: codec.TEdit, From: "alice", B: "secret plan v2", Tgt: &id}}
		del := &im.Append{CV: cv, To: []string{"alice"}, Event: codec.Event{T: codec.TDel, From: "alice", Tgt: &id},
			Purge: &im.Purge{ID: id, Keep: keep}}
		if err := s.Append(edit); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(del); err != nil {
			t.Fatal(err)
		}
		items, _, err := s.History(im.HistoryQuery{CV: cv, Window: im.Open, Max: 10})
		if err != nil || len(items) != 3 {
			t.Fatalf("history %v %v", items, err)
		}
		for _, ev := range items[:2] {
			if !ev.Deleted || ev.B != "" || ev.Att != nil {
				t.Errorf("keep=%v: users see %+v", keep, ev)
			}
		}
		if ev, err := s.EventByID(id); err != nil || !ev.Deleted || ev.B != "" {
			t.Errorf("keep=%v: by id %+v %v", keep, ev, err)
		}
		ex := exported(t, s, im.ExportQuery{CV: cv})
		if len(ex) != 3 {
			t.Fatalf("export %d events", len(ex))
		}
		wantB := []string{"", ""}
		if keep {
			wantB = []string{"secret plan", "secret plan v2"}
		}
		for i := range 2 {
			if ex[i].B != wantB[i] || !ex[i].Deleted {
				t.Errorf("keep=%v: exported %+v, want body %q", keep, ex[i], wantB[i])
			}
		}
		fs := fg.take()
		if len(fs) != 2 || fs[0].ID != id || !fs[0].Deleted || fs[0].Held != keep || fs[1].ID != edit.Event.ID {
			t.Errorf("keep=%v: forgotten %+v", keep, fs)
		}
	}
}

// TestExportSelects: by conversation, by user (their DMs and, for a
// group, only their membership window) and by time, in conversation and
// seq order, paging through more events than one page.
func TestExportSelects(t *testing.T) {
	t.Parallel()
	s, clk, _ := openCompliance(t)
	n := exportPage*2 + 7
	as := make([]*im.Append, n)
	for i := range n {
		as[i] = &im.Append{CV: "d:alice:bob", To: []string{"alice"}, Event: codec.Event{T: codec.TMsg, From: "alice", B: fmt.Sprint(i)}}
	}
	if err := s.Append(as...); err != nil {
		t.Fatal(err)
	}
	mid := clk.Now()
	clk.Add(time.Minute)
	appendMsg(t, s, "d:bob:carol", "carol", "not alice's")
	// alice in g:ops from seq 2 to 3.
	appendMsg(t, s, "g:ops", "bob", "before alice")
	if err := s.Append(&im.Append{CV: "g:ops", To: []string{"bob"}, Event: codec.Event{T: codec.TMember, Op: "add", Who: []string{"alice"}},
		Members: []im.MemberChange{{GID: "ops", UID: "alice", Rec: im.Member{Role: im.RoleMember}, SetFrom: true}}}); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, s, "g:ops", "alice", "alice in ops")
	if err := s.Append(&im.Append{CV: "g:ops", To: []string{"bob"}, Event: codec.Event{T: codec.TMember, Op: "leave", Who: []string{"alice"}},
		Members: []im.MemberChange{{GID: "ops", UID: "alice", Rec: im.Member{Role: im.RoleMember, From: 2}, SetTo: true}}}); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, s, "g:ops", "bob", "after alice")
	if err := s.Append(&im.Append{CV: "d:alice:bob", To: []string{"alice"}, UserConvs: []im.UserConv{{UID: "alice", CV: "d:alice:bob"}},
		Event: codec.Event{T: codec.TMsg, From: "bob", B: "last"}}); err != nil {
		t.Fatal(err)
	}
	all := exported(t, s, im.ExportQuery{})
	if len(all) != n+1+4+1+1 {
		t.Fatalf("export all: %d events", len(all))
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.CV > b.CV || (a.CV == b.CV && a.Seq >= b.Seq) {
			t.Fatalf("out of order at %d: %s/%d then %s/%d", i, a.CV, a.Seq, b.CV, b.Seq)
		}
	}
	byUser := exported(t, s, im.ExportQuery{UID: "alice"})
	var got []string
	for _, ev := range byUser[n+1:] {
		got = append(got, fmt.Sprintf("%s/%d", ev.CV, ev.Seq))
	}
	if len(byUser) != n+1+3 || !slices.Equal(got, []string{"g:ops/2", "g:ops/3", "g:ops/4"}) {
		t.Errorf("by user: %d events, groups %v", len(byUser), got)
	}
	early := exported(t, s, im.ExportQuery{CV: "d:alice:bob", Until: mid.UnixMilli() + 1})
	late := exported(t, s, im.ExportQuery{CV: "d:alice:bob", Since: mid.UnixMilli() + 1})
	if len(early) != n || len(late) != 1 || late[0].B != "last" {
		t.Errorf("by time: %d before, %d after", len(early), len(late))
	}
	var zero ulid.ULID
	if all[0].ID == zero {
		t.Error("exported events lack ids")
	}
}

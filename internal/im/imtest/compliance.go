package imtest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// compliance needs the backend's im.Compliance.
func compliance(t testing.TB, b Backend) im.Compliance {
	t.Helper()
	if b.Compliance == nil {
		t.Fatal("the backend needs Compliance (holds, retention, export)")
	}
	return b.Compliance
}

func bodies(t testing.TB, b Backend, cv string) []string {
	t.Helper()
	page, _, err := b.Store.History(im.HistoryQuery{CV: cv, Window: im.Open, Max: 100})
	if err != nil {
		t.Fatalf("history %s: %v", cv, err)
	}
	var out []string
	for _, ev := range page {
		out = append(out, ev.B)
	}
	return out
}

func exportBodies(t testing.TB, c im.Compliance, q im.ExportQuery) []string {
	t.Helper()
	var out []string
	if err := c.Export(q, func(ev *im.Event) error { out = append(out, ev.B); return nil }); err != nil {
		t.Fatalf("export: %v", err)
	}
	return out
}

func text(cv, from, body string) *im.Append {
	return &im.Append{CV: cv, To: []string{from}, Event: im.Event{T: im.TMsg, From: from, B: body}}
}

// holdsAndPurge: holds are stored, listed and removed; Held covers the
// conversation of a cv hold and, for a user hold, what the user wrote and
// their DMs; a purge without Keep removes the bodies of a message and its
// edits (users and export see a tombstone), with Keep users see the
// tombstone and export the bodies; retention steps over held events.
func holdsAndPurge(t testing.TB, b Backend) {
	defer consume(b)()
	c := compliance(t, b)
	hc, err := c.AddHold(im.Hold{CV: "g:case", Reason: "r"})
	if err != nil || hc.ID == "" || hc.Created == 0 {
		t.Fatalf("add hold: %+v %v", hc, err)
	}
	hu, err := c.AddHold(im.Hold{UID: "eve"})
	if err != nil {
		t.Fatal(err)
	}
	if hs, err := c.Holds(); err != nil || len(hs) != 2 {
		t.Fatalf("holds: %v %v", hs, err)
	}
	for _, x := range []struct {
		ev   im.Event
		held bool
	}{
		{im.Event{CV: "g:case", From: "a"}, true},
		{im.Event{CV: "g:other", From: "eve"}, true},
		{im.Event{CV: "d:bob:eve", From: "bob"}, true},
		{im.Event{CV: "d:a:b", From: "a"}, false},
		{im.Event{CV: "g:other", From: "a"}, false},
	} {
		if got, err := c.Held(&x.ev); err != nil || got != x.held {
			t.Errorf("Held(%s by %s) = %v, %v; want %v", x.ev.CV, x.ev.From, got, err, x.held)
		}
	}
	for _, keep := range []bool{false, true} {
		cv := "g:free"
		if keep {
			cv = "g:case"
		}
		m := mustAppend(t, b, text(cv, "a", "secret"))
		id := m.Event.ID
		mustAppend(t, b, &im.Append{CV: cv, To: []string{"a"}, Event: im.Event{T: im.TEdit, From: "a", B: "secret 2", Tgt: &id}})
		mustAppend(t, b, &im.Append{CV: cv, To: []string{"a"}, Event: im.Event{T: im.TDel, From: "a", Tgt: &id},
			Purge: &im.Purge{ID: id, Keep: keep}})
		if got := bodies(t, b, cv); !slices.Equal(got, []string{"", "", ""}) {
			t.Errorf("keep=%v: users see bodies %q", keep, got)
		}
		if ev, err := b.Store.EventByID(id); err != nil || !ev.Deleted || ev.B != "" {
			t.Errorf("keep=%v: EventByID %+v %v", keep, ev, err)
		}
		want := []string{"", "", ""}
		if keep {
			want = []string{"secret", "secret 2", ""}
		}
		if got := exportBodies(t, c, im.ExportQuery{CV: cv}); !slices.Equal(got, want) {
			t.Errorf("keep=%v: export %q, want %q", keep, got, want)
		}
	}
	b.Clock.Advance(2 * time.Hour)
	if err := b.Trim(b.Clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, b, "g:case"); len(got) != 3 {
		t.Errorf("held conversation trimmed to %d events", len(got))
	}
	if got := bodies(t, b, "g:free"); len(got) != 0 {
		t.Errorf("unheld conversation kept %d events", len(got))
	}
	if _, err := c.RemoveHold(hu.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveHold(hu.ID); !errors.Is(err, im.ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
}

// convRetention: a conversation's own retention trims it without a
// server default, and overrides the default when longer.
func convRetention(t testing.TB, b Backend) {
	defer consume(b)()
	c := compliance(t, b)
	for _, cv := range []string{"g:short", "g:long", "g:none"} {
		mustAppend(t, b, text(cv, "a", "old"))
	}
	if err := c.SetRetention("g:short", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRetention("g:long", 10*time.Hour); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Retention("g:long"); err != nil || d != 10*time.Hour {
		t.Fatalf("retention %v %v", d, err)
	}
	if d, err := c.Retention("g:none"); err != nil || d != 0 {
		t.Fatalf("no retention: %v %v", d, err)
	}
	b.Clock.Advance(2 * time.Hour)
	if err := b.Trim(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if len(bodies(t, b, "g:short")) != 0 || len(bodies(t, b, "g:long")) != 1 || len(bodies(t, b, "g:none")) != 1 {
		t.Errorf("without a default: short %q long %q none %q", bodies(t, b, "g:short"), bodies(t, b, "g:long"), bodies(t, b, "g:none"))
	}
	if err := b.Trim(b.Clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(bodies(t, b, "g:long")) != 1 || len(bodies(t, b, "g:none")) != 0 {
		t.Errorf("with a default: long %q none %q", bodies(t, b, "g:long"), bodies(t, b, "g:none"))
	}
	if err := c.SetRetention("g:long", 0); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Retention("g:long"); err != nil || d != 0 {
		t.Errorf("removed retention: %v %v", d, err)
	}
}

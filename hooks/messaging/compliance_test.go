package messaging_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// TestDeletePurgeAndHold: against a real broker, deleting a message
// without a hold purges its body and its edit's from the store: history
// and msg.get show a tombstone (deleted, no body) and an export has no
// body either. Under a legal hold on the conversation users see the same
// tombstone, but the export keeps both bodies. Each delete is audited.
func TestDeletePurgeAndHold(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a, bo := connect(t, b, "alice", "p1"), connect(t, b, "bob", "p1")
	hold, err := b.Store().AddHold(im.Hold{CV: "d:alice:bob", Reason: "case 42"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(cmid string) codec.Event {
		t.Helper()
		a.text("bob", cmid, "body "+cmid)
		m := bo.next()
		a.next()
		a.send(map[string]any{"op": "edit", "id": m.ID.String(), "cmid": cmid + "e", "b": "edited " + cmid})
		bo.next()
		a.next()
		a.send(map[string]any{"op": "del", "id": m.ID.String(), "cmid": cmid + "d"})
		if ev := bo.next(); ev.T != "del" {
			t.Fatalf("del %+v", ev)
		}
		a.next()
		var got codec.Event
		bo.ok("msg.get", map[string]any{"id": m.ID.String()}, &got)
		if !got.Deleted || got.B != "" || got.T != "msg" {
			t.Fatalf("msg.get after del: %+v", got)
		}
		// An edit of a deleted message is refused.
		a.send(map[string]any{"op": "edit", "id": m.ID.String(), "cmid": cmid + "x", "b": "back"})
		if e := a.nextErr(); e.Code != 404 {
			t.Fatalf("edit after del: %+v", e)
		}
		return m
	}
	held := run("h")
	if _, err := b.Store().RemoveHold(hold.ID); err != nil {
		t.Fatal(err)
	}
	purged := run("p")
	var h codec.HistoryResult
	bo.ok("history", map[string]any{"cv": "d:alice:bob"}, &h)
	for _, ev := range h.Items {
		if (ev.T == "msg" || ev.T == "edit") && (!ev.Deleted || ev.B != "") {
			t.Errorf("history shows %+v", ev)
		}
	}
	bodies := map[string]string{}
	if err := b.Store().Export(im.ExportQuery{CV: "d:alice:bob"}, func(ev *im.Event) error {
		key := ev.ID.String()
		if ev.Tgt != nil && ev.T == "edit" {
			key = "edit of " + ev.Tgt.String()
		}
		bodies[key] = ev.B
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		held.ID.String(): "body h", "edit of " + held.ID.String(): "edited h",
		purged.ID.String(): "", "edit of " + purged.ID.String(): "",
	} {
		if bodies[k] != want {
			t.Errorf("export %s = %q, want %q", k, bodies[k], want)
		}
	}
	ls := auditLines(t, b)
	for _, want := range []map[string]any{
		{"type": "msg.delete", "uid": "alice", "reason": "held", "target": held.ID.String()},
		{"type": "msg.delete", "uid": "alice", "reason": "purged", "target": purged.ID.String()},
	} {
		if !hasLine(ls, want) {
			t.Errorf("no audit line %v", want)
		}
	}
}

// TestConvSet: conv.set sets a group's own retention for owners and
// admins, 0 returns it to the default; members, DMs, bad values and
// unknown groups are refused with their codes; changes are audited.
func TestConvSet(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob", "carol")
	a, bo, ca := connect(t, b, "alice", "p1"), connect(t, b, "bob", "p1"), connect(t, b, "carol", "p1")
	a.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"bob"}}, nil)
	var r codec.ConvSetResult
	a.ok("conv.set", map[string]any{"cv": "g:ops", "retention": 86400}, &r)
	if r.CV != "g:ops" || r.Retention != 86400 {
		t.Fatalf("result %+v", r)
	}
	if d, err := b.Store().Retention("g:ops"); err != nil || d != 24*time.Hour {
		t.Fatalf("stored %v %v", d, err)
	}
	a.ok("group.role", map[string]any{"gid": "ops", "uid": "bob", "role": "admin"}, nil)
	bo.ok("conv.set", map[string]any{"cv": "g:ops", "retention": 0}, &r)
	if d, err := b.Store().Retention("g:ops"); err != nil || d != 0 {
		t.Fatalf("after 0: %v %v", d, err)
	}
	a.ok("group.role", map[string]any{"gid": "ops", "uid": "bob", "role": "member"}, nil)
	for _, c := range []struct {
		who  *dev
		args any
		code int
	}{
		{bo, map[string]any{"cv": "g:ops", "retention": 3600}, 403}, // a plain member
		{ca, map[string]any{"cv": "g:ops", "retention": 3600}, 403}, // not a member
		{a, map[string]any{"cv": "d:alice:bob", "retention": 3600}, 400},
		{a, map[string]any{"cv": "g:ops", "retention": 59}, 400},
		{a, map[string]any{"cv": "g:ops", "retention": -1}, 400},
		{a, map[string]any{"cv": "g:ops"}, 400},
		{a, map[string]any{"cv": "g:ops", "retention": "1h"}, 400},
		{a, map[string]any{"cv": "ops", "retention": 3600}, 400},
		{a, map[string]any{"cv": "g:nope", "retention": 3600}, 404},
		{a, json.RawMessage(`[1]`), 400},
	} {
		c.who.fail("conv.set", c.args, c.code)
	}
	ls := auditLines(t, b)
	for _, want := range []map[string]any{
		{"type": "retention.set", "uid": "alice", "target": "g:ops", "reason": "24h0m0s", "ok": true},
		{"type": "retention.set", "uid": "bob", "target": "g:ops", "reason": "0s", "ok": true},
	} {
		if !hasLine(ls, want) {
			t.Errorf("no audit line %v", want)
		}
	}
}

// forgetRec records what the broker's Forgetters hear.
type forgetRec struct {
	mu sync.Mutex
	fs []im.Forgotten
}

func (f *forgetRec) Forget(fs []im.Forgotten) { f.mu.Lock(); f.fs = append(f.fs, fs...); f.mu.Unlock() }
func (f *forgetRec) get() []im.Forgotten {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.fs)
}

// TestForgetters: what a search index or file storage registers on the
// broker hears of a purged delete (with the attachments) when its commit
// returns, and of events retention removed.
func TestForgetters(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	rec := &forgetRec{}
	b.Forgetters().Add(rec)
	users(b, "alice", "bob")
	a, bo := connect(t, b, "alice", "p1"), connect(t, b, "bob", "p1")
	content := []byte("the plan")
	f, err := b.Files().CreateUpload("alice", int64(len(content)), "plan.txt", "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Files().Append("alice", f.FID, 0, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Files().FinishUpload("alice", f.FID); err != nil {
		t.Fatal(err)
	}
	a.send(map[string]any{"to": "bob", "cmid": "1", "b": "with a file", "att": []map[string]any{{"fid": f.FID}}})
	m := bo.next()
	a.next()
	a.text("bob", "2", "kept until trimmed")
	kept := bo.next()
	a.next()
	a.send(map[string]any{"op": "del", "id": m.ID.String(), "cmid": "3"})
	bo.next() // the del event: its commit (and the Forget call) came first
	fs := rec.get()
	if len(fs) != 1 || fs[0].ID != m.ID || !fs[0].Deleted || fs[0].Held || len(fs[0].Att) != 1 || fs[0].CV != "d:alice:bob" {
		t.Fatalf("after the delete: %+v", fs)
	}
	if _, err := b.Store().Trim(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, f := range rec.get()[1:] {
		if f.Deleted {
			t.Errorf("trimmed event reported deleted: %+v", f)
		}
		gone = append(gone, f.ID.String())
	}
	if !slices.Contains(gone, kept.ID.String()) || !slices.Contains(gone, m.ID.String()) || len(gone) != 3 {
		t.Fatalf("trimmed %v, want the two messages and the del", gone)
	}
}

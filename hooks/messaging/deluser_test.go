package messaging_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
)

// TestDeletedUserDataStaysBehind is the regression of issue 9 item 5: after
// alice is deleted and an account with the same uid is created, the new
// alice syncs nothing old, cannot read the old DM or group, and does not
// receive the old group's messages (on main she got all three); bob keeps
// his history and sees alice leave.
func TestDeletedUserDataStaysBehind(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob", "carol")
	a, bb := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")
	a.text("bob", "dm-1", "old dm")
	old := bb.next()
	a.next()
	a.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"bob", "carol"}}, nil)
	bb.next()
	a.next()
	a.text("g:ops", "g-1", "old group")
	bb.next()
	a.next()
	a.ok("contacts.add", map[string]any{"uid": "bob"}, nil)
	bb.ok("contacts.add", map[string]any{"uid": "alice"}, nil)
	bb.ok("contacts.block", map[string]any{"uid": "alice"}, nil)
	brokertest.Disconnect(t, a.c)

	if err := b.Accounts().DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	// Bob's view: the group passed to the next member and alice left it and
	// the DM; his history is intact; his roster and blocks forgot alice.
	var ms codec.MembersResult
	bb.ok("group.members", map[string]any{"gid": "ops"}, &ms)
	if len(ms.Members) != 2 || ms.Members[0] != (codec.Member{UID: "bob", Role: "owner"}) || ms.Members[1].UID != "carol" {
		t.Fatalf("members after delete: %+v", ms)
	}
	var h codec.HistoryResult
	bb.ok("history", map[string]any{"cv": "d:alice:bob"}, &h)
	if len(h.Items) != 2 || h.Items[0].B != "old dm" || h.Items[1].T != codec.TMember || h.Items[1].Op != "leave" {
		t.Fatalf("bob's dm history: %+v", h.Items)
	}
	bb.ok("history", map[string]any{"cv": "g:ops"}, &h)
	if n := len(h.Items); n < 2 || h.Items[n-1].Op != "leave" || !slices.Equal(h.Items[n-1].Who, []string{"alice"}) {
		t.Fatalf("bob's group history: %+v", h.Items)
	}
	var cr codec.ContactsResult
	bb.ok("contacts.list", nil, &cr)
	if len(cr.Contacts) != 0 || len(cr.Blocked) != 0 {
		t.Fatalf("bob's contacts: %+v", cr)
	}

	// A new account with the same uid starts empty.
	b.AddUser("alice", pw)
	na := connect(t, b, "alice", "p1")
	var sr codec.SyncResult
	na.ok("sync", map[string]any{"since": 0}, &sr)
	if !sr.Reset || len(sr.Ev) != 0 || len(sr.Convs) != 0 {
		t.Fatalf("new alice's sync: %+v", sr)
	}
	head := sr.USHead
	var cl codec.ConvListResult
	na.ok("conv.list", nil, &cl)
	if len(cl.Convs) != 0 {
		t.Fatalf("new alice's conv.list: %+v", cl)
	}
	na.ok("contacts.list", nil, &cr)
	if len(cr.Contacts) != 0 || len(cr.Blocked) != 0 {
		t.Fatalf("new alice's contacts: %+v", cr)
	}
	na.fail("history", map[string]any{"cv": "d:alice:bob"}, 404)
	na.fail("history", map[string]any{"cv": "g:ops"}, 403)
	na.fail("msg.get", map[string]any{"id": old.ID.String()}, 404)
	na.fail("group.members", map[string]any{"gid": "ops"}, 403)

	// New messages to the old group do not reach her.
	bb.text("g:ops", "g-2", "new group")
	bb.next()
	na.none(na.in, "group message")

	// A new DM starts after the old one: she reads only her own part.
	na.text("bob", "dm-2", "hello again")
	if ev := bb.next(); ev.B != "hello again" {
		t.Fatalf("bob got %+v", ev)
	}
	na.next()
	na.ok("history", map[string]any{"cv": "d:alice:bob"}, &h)
	if len(h.Items) != 1 || h.Items[0].B != "hello again" {
		t.Fatalf("new alice's dm history: %+v", h.Items)
	}
	if evs := na.syncAll(head, 100); len(evs) != 1 || evs[0].B != "hello again" {
		t.Fatalf("new alice's sync from %d: %+v", head, evs)
	}
}

// TestDMToDeletedUserRefused: the DM peer answer ("bob exists") that a
// conversation in full swing reuses for 10 s is dropped when bob's
// account is deleted, so the very next DM is refused with 404 instead of
// landing in a stream that the next account with the uid would inherit.
func TestDMToDeletedUserRefused(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a := connect(t, b, "alice", "p1")
	a.text("bob", "dm-1", "hello") // caches "bob exists"
	a.next()
	if err := b.Accounts().DeleteUser("bob"); err != nil {
		t.Fatal(err)
	}
	a.text("bob", "dm-2", "are you there")
	if e := a.nextErr(); e.Code != 404 || e.CMID != "dm-2" {
		t.Fatalf("DM to a deleted user: %+v, want err 404", e)
	}
}

// TestDMListedAgainAfterRecreate: a conversation in full swing skips
// writing the two conversation-list entries (the peer cache knows they
// are there); deleting an account takes the DM off its list and drops
// that knowledge, so the first DM to the next account with the uid lists
// the conversation again.
func TestDMListedAgainAfterRecreate(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a, bb := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")
	for i := range 3 { // the first lists it, the others skip the entries
		bb.text("alice", fmt.Sprint("dm-", i), "hi")
		a.next()
		bb.next()
	}
	listed := func(c *dev, want bool) {
		t.Helper()
		var cl codec.ConvListResult
		c.ok("conv.list", nil, &cl)
		has := slices.ContainsFunc(cl.Convs, func(c codec.Conv) bool { return c.CV == "d:alice:bob" })
		if has != want {
			t.Fatalf("conv.list %+v: has d:alice:bob %v, want %v", cl.Convs, has, want)
		}
	}
	listed(a, true)
	listed(bb, true)
	brokertest.Disconnect(t, a.c)
	if err := b.Accounts().DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	b.AddUser("alice", pw)
	na := connect(t, b, "alice", "p1")
	listed(na, false)
	bb.text("alice", "dm-new", "welcome back")
	if ev := na.next(); ev.B != "welcome back" {
		t.Fatalf("new alice got %+v", ev)
	}
	bb.next()
	listed(na, true)
	listed(bb, true)
}

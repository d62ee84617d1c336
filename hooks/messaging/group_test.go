package messaging_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

func TestGroups(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob", "carol", "dave")
	a, bo, ca, da := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1"), connect(t, b, "carol", "c1"), connect(t, b, "dave", "d1")

	var created codec.GroupCreated
	a.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"bob"}}, &created)
	if created.GID != "ops" || created.CV != "g:ops" {
		t.Fatalf("created %+v", created)
	}
	for _, d := range []*dev{a, bo} {
		if ev := d.next(); ev.T != "member" || ev.Op != "add" || ev.By != "alice" || len(ev.Who) != 2 || ev.Seq != 1 {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	// Retained meta, readable by members only.
	meta := make(chan []byte, 256) // every membership change republishes it
	brokertest.Subscribe(t, bo.c, topics.GroupMeta("ops"), 1, func(_ paho.Client, m paho.Message) { offer(meta, m.Payload()) })
	var gm codec.GroupMeta
	if err := json.Unmarshal(bo.wait(meta, "meta"), &gm); err != nil || gm.Name != "Ops" || gm.N != 2 {
		t.Fatalf("meta %+v %v", gm, err)
	}
	if q := brokertest.Subscribe(t, ca.c, topics.GroupMeta("ops"), 1, func(paho.Client, paho.Message) {}); q != 0x80 {
		t.Fatalf("non-member subscribed to meta: %#x", q)
	}

	// Members may not add; admins may.
	bo.fail("group.add", map[string]any{"gid": "ops", "uids": []string{"carol"}}, 403)
	a.ok("group.role", map[string]any{"gid": "ops", "uid": "bob", "role": "admin"}, nil)
	a.next()
	if ev := bo.next(); ev.Op != "role" || ev.Role != "admin" {
		t.Fatalf("role event %+v", ev)
	}
	var mr codec.MembersResult
	bo.ok("group.add", map[string]any{"gid": "ops", "uids": []string{"carol", "dave"}}, &mr)
	if len(mr.Members) != 4 {
		t.Fatalf("members %+v", mr)
	}
	for _, d := range []*dev{a, bo, ca, da} {
		if ev := d.next(); ev.Op != "add" || len(ev.Who) != 2 {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	ca.text("g:ops", "c-1", "hi all")
	for _, d := range []*dev{a, bo, ca, da} {
		if ev := d.next(); ev.B != "hi all" || ev.From != "carol" {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	// An admin cannot remove the owner; removing carol notifies all four.
	bo.fail("group.remove", map[string]any{"gid": "ops", "uids": []string{"alice"}}, 403)
	bo.ok("group.remove", map[string]any{"gid": "ops", "uids": []string{"carol"}}, &mr)
	if len(mr.Members) != 3 {
		t.Fatalf("members %+v", mr)
	}
	for _, d := range []*dev{a, bo, ca, da} {
		if ev := d.next(); ev.Op != "remove" || ev.Who[0] != "carol" {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	ca.text("g:ops", "c-2", "still here?")
	if e := ca.nextErr(); e.Code != 403 {
		t.Fatalf("removed member sent: %+v", e)
	}
	a.text("g:ops", "a-1", "after carol")
	for _, d := range []*dev{a, bo, da} {
		d.next()
	}
	ca.none(ca.in, "event after removal")
	// History is clipped to carol's membership: from her add to her removal.
	var h codec.HistoryResult
	ca.ok("history", map[string]any{"cv": "g:ops"}, &h)
	if h.First != 3 || h.Last != 5 || len(h.Items) != 3 {
		t.Fatalf("carol's history %d..%d (%d items)", h.First, h.Last, len(h.Items))
	}
	da.ok("group.leave", map[string]any{"gid": "ops"}, nil)
	for _, d := range []*dev{a, bo, da} {
		if ev := d.next(); ev.Op != "leave" {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	a.fail("group.leave", map[string]any{"gid": "ops"}, 409)
	a.ok("group.update", map[string]any{"gid": "ops", "name": "Ops 2"}, nil)
	if ev := bo.next(); ev.T != "conv" || ev.Name != "Ops 2" {
		t.Fatalf("conv event %+v", ev)
	}
	a.next()
	for {
		if err := json.Unmarshal(bo.wait(meta, "meta"), &gm); err != nil {
			t.Fatal(err)
		}
		if gm.Name == "Ops 2" {
			break
		}
	}
	if gm.N != 2 {
		t.Fatalf("meta %+v", gm)
	}
	bo.ok("group.members", map[string]any{"gid": "ops"}, &mr)
	if len(mr.Members) != 2 || mr.Members[0].Role != "owner" || mr.Members[1].Role != "admin" {
		t.Fatalf("members %+v", mr)
	}
	da.fail("group.members", map[string]any{"gid": "ops"}, 403)
}

// TestGroupFanout1000 sends into a group of 1,000 members, a few of them
// online, and checks live delivery and an offline member's sync.
func TestGroupFanout1000(t *testing.T) {
	t.Parallel()
	const n = 1000
	b := brokertest.Start(t)
	uids := make([]string, n)
	for i := range uids {
		uids[i] = fmt.Sprintf("u%04d", i)
	}
	users(b, uids...)
	owner := connect(t, b, uids[0], "d")
	online := []*dev{owner}
	for _, u := range uids[1:6] {
		online = append(online, connect(t, b, u, "d"))
	}
	owner.ok("group.create", map[string]any{"gid": "big", "members": uids[1:]}, nil)
	for _, d := range online {
		if ev := d.next(); len(ev.Who) != n {
			t.Fatalf("member event lists %d", len(ev.Who))
		}
	}
	const msgs = 20
	start := time.Now()
	for i := range msgs {
		owner.text("g:big", fmt.Sprint("m", i), "hello everyone")
	}
	acked := time.Since(start)
	for _, d := range online {
		for i := range msgs {
			if ev := d.next(); ev.Seq != uint64(i+2) {
				t.Fatalf("%s got seq %d", d.uid, ev.Seq)
			}
		}
	}
	t.Logf("group of %d: %d sends acked in %v (%v each), delivered to %d live devices in %v",
		n, msgs, acked, acked/msgs, len(online), time.Since(start))
	late := connect(t, b, uids[n-1], "d")
	if evs := late.syncAll(0, 1000); len(evs) != msgs+1 {
		t.Fatalf("offline member synced %d events", len(evs))
	}
}

// TestGroupAdminRules: an admin manages plain members, but only the owner
// changes an admin's role or removes an admin (issue 9 item 9: an admin
// could demote another admin, then remove them).
func TestGroupAdminRules(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "olga", "adam", "anna", "mike")
	o, ad := connect(t, b, "olga", "o1"), connect(t, b, "adam", "a1")
	o.ok("group.create", map[string]any{"gid": "club", "members": []string{"adam", "anna", "mike"}}, nil)
	o.ok("group.role", map[string]any{"gid": "club", "uid": "adam", "role": "admin"}, nil)
	o.ok("group.role", map[string]any{"gid": "club", "uid": "anna", "role": "admin"}, nil)

	// Admin → admin: demotion and removal are refused.
	ad.fail("group.role", map[string]any{"gid": "club", "uid": "anna", "role": "member"}, 403)
	ad.fail("group.remove", map[string]any{"gid": "club", "uids": []string{"anna"}}, 403)
	// Admin → plain member: promotion, demotion and removal are allowed.
	ad.ok("group.role", map[string]any{"gid": "club", "uid": "mike", "role": "admin"}, nil)
	o.ok("group.role", map[string]any{"gid": "club", "uid": "mike", "role": "member"}, nil)
	ad.ok("group.remove", map[string]any{"gid": "club", "uids": []string{"mike"}}, nil)
	// The owner may demote and remove an admin.
	o.ok("group.role", map[string]any{"gid": "club", "uid": "anna", "role": "member"}, nil)
	var mr codec.MembersResult
	o.ok("group.remove", map[string]any{"gid": "club", "uids": []string{"anna"}}, &mr)
	roles := map[string]string{}
	for _, m := range mr.Members {
		roles[m.UID] = m.Role
	}
	if len(roles) != 2 || roles["olga"] != "owner" || roles["adam"] != "admin" {
		t.Fatalf("members %+v", mr)
	}
}

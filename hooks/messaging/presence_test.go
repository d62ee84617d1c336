package messaging_test

import (
	"fmt"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// TestPresenceGet: presence.get answers the caller itself and the users
// in C(caller) that no block hides; unknown and invisible users are
// absent; the list is capped.
func TestPresenceGet(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob", "carol", "dave", "erin", "fred")
	for i, uid := range []string{"bob", "carol", "erin", "fred"} {
		if err := b.Store().PutPresence(uid, im.Presence{S: "away", PV: uint64(10 + i), LS: 1000, TX: uid}); err != nil {
			t.Fatal(err)
		}
	}
	a, da := connect(t, b, "alice", "p1"), connect(t, b, "dave", "d1")
	a.ok("contacts.add", map[string]any{"uid": "bob"}, nil)
	a.ok("contacts.add", map[string]any{"uid": "dave"}, nil)
	a.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"erin"}}, nil)
	a.next() // the member event
	da.ok("contacts.block", map[string]any{"uid": "alice"}, nil)

	var r codec.PresenceGetResult
	a.ok("presence.get", map[string]any{"uids": []string{"alice", "bob", "carol", "dave", "erin", "zed", "bob"}}, &r)
	if len(r.P) != 3 {
		t.Fatalf("presence.get: %+v, want alice, bob and erin", r.P)
	}
	if p := r.P["bob"]; p != (codec.Presence{S: "away", PV: 10, LS: 1000, TX: "bob"}) {
		t.Fatalf("bob %+v", p)
	}
	if p := r.P["erin"]; p.S != "away" || p.PV != 12 {
		t.Fatalf("erin %+v", p)
	}
	if p := r.P["alice"]; p.S != "on" || p.D != 1 || p.PV == 0 {
		t.Fatalf("alice's own presence %+v", p)
	}
	r = codec.PresenceGetResult{}
	a.ok("presence.get", map[string]any{"uids": []string{}}, &r)
	if len(r.P) != 0 {
		t.Fatalf("empty list: %+v", r.P)
	}
	// Removing the contact hides bob again.
	a.ok("contacts.remove", map[string]any{"uid": "bob"}, nil)
	r = codec.PresenceGetResult{}
	a.ok("presence.get", map[string]any{"uids": []string{"bob", "erin"}}, &r)
	if _, ok := r.P["bob"]; ok || len(r.P) != 1 {
		t.Fatalf("after contacts.remove: %+v", r.P)
	}
	a.fail("presence.get", map[string]any{"uids": []string{"Bad!"}}, 400)
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("user-%027d", i) // 32 bytes: the longest uid
	}
	a.fail("presence.get", map[string]any{"uids": many}, 400)
	r = codec.PresenceGetResult{}
	a.ok("presence.get", map[string]any{"uids": many[:1000]}, &r)
	if len(r.P) != 0 {
		t.Fatalf("strangers: %+v", r.P)
	}
}

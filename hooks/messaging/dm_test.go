package messaging_test

import (
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
)

func TestDMSendFanoutDedupe(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a1, a2, b1 := connect(t, b, "alice", "p1"), connect(t, b, "alice", "p2"), connect(t, b, "bob", "b1")

	a1.send(map[string]any{"to": "bob", "cmid": "c-1", "b": "on my way", "from": "mallory", "fd": "x"})
	var got []codec.Event
	for _, d := range []*dev{a1, a2, b1} {
		ev := d.next()
		if ev.T != "msg" || ev.From != "alice" || ev.FD != "p1" || ev.CV != "d:alice:bob" || ev.Seq != 1 ||
			ev.US != 1 || ev.B != "on my way" || ev.CMID != "c-1" || ev.CT != "text/plain" || ev.TS == 0 || ev.ID.Time() == 0 {
			t.Fatalf("%s.%s got %+v", d.uid, d.did, ev)
		}
		got = append(got, ev)
	}
	if got[0].ID != got[2].ID {
		t.Fatal("ids differ between recipients")
	}
	// A resend returns the original to the sending device only.
	a1.text("bob", "c-1", "on my way")
	if ev := a1.next(); ev.ID != got[0].ID || ev.Seq != 1 || ev.US != 1 {
		t.Fatalf("resend got %+v", ev)
	}
	b1.none(b1.in, "second delivery")
	a1.text("d:alice:bob", "c-2", "second")
	for _, d := range []*dev{a1, a2, b1} {
		if ev := d.next(); ev.Seq != 2 || ev.US != 2 || ev.B != "second" {
			t.Fatalf("got %+v", ev)
		}
	}
	evs := b1.syncAll(0, 10)
	if len(evs) != 2 || evs[0].US != 1 || evs[1].US != 2 || evs[0].ID != got[0].ID {
		t.Fatalf("sync: %+v", evs)
	}
	var h codec.HistoryResult
	b1.ok("history", map[string]any{"cv": "d:alice:bob"}, &h)
	if len(h.Items) != 2 || h.First != 1 || h.Last != 2 || !h.Complete {
		t.Fatalf("history: %+v", h)
	}
	var full codec.Event
	b1.ok("msg.get", map[string]any{"id": got[0].ID.String()}, &full)
	if full.B != "on my way" || full.Seq != 1 {
		t.Fatalf("msg.get: %+v", full)
	}
}

package messaging_test

import (
	"context"
	"testing"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// TestNotImplemented: features of the protocol that are not built are
// refused with err 501 "not implemented" (calls were acknowledged and
// dropped; the ops answered 400 "unknown op"), while a truly unknown op
// stays 400. Files (§11) are built: hooks/files tests them.
func TestNotImplemented(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a := connect(t, b, "alice", "p1")

	a.pub(topics.UpCall, []byte(`{"call":"c1","op":"invite","to":"bob"}`))
	if e := a.nextErr(); e.Code != 501 {
		t.Fatalf("call publish: code %d, want 501", e.Code)
	}
	for _, op := range []string{"key.upload", "key.query", "key.claim", "token.create", "token.list", "token.revoke", "admin.kick", "admin.stats"} {
		r := a.call(op, map[string]any{})
		if r.OK || r.Err == nil || r.Err.Code != 501 || r.Err.Msg != "not implemented" {
			t.Errorf("%s: want err 501 not implemented, got ok=%v err=%+v", op, r.OK, r.Err)
		}
	}
	a.fail("zap", nil, 400)
	a.fail("file.frobnicate", nil, 400)
}

// TestNotImplementedPUBACK: an MQTT 5 device gets PUBACK 0x83
// (implementation specific error) for a call.
func TestNotImplementedPUBACK(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice")
	c, _, err := b.Dial5("alice", "p5", pw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: topics.DeviceFilter("alice", "p5"), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{topics.UpCall} {
		r, err := c.Publish(ctx, &paho5.Publish{Topic: topics.Up("alice", "p5", kind), QoS: 1, Payload: []byte(`{}`)})
		if r == nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if r.ReasonCode != 0x83 {
			t.Errorf("%s: PUBACK %#x, want 0x83", kind, r.ReasonCode)
		}
		select {
		case p := <-c.Msgs:
			var ev codec.Event
			if err := codec.Decode(p.Payload, &ev); err != nil || ev.T != "err" || ev.Code != 501 {
				t.Errorf("%s: err event %+v (%v), want code 501", kind, ev, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: no err event", kind)
		}
	}
}

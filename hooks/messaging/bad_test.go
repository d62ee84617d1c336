package messaging_test

import (
	"context"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

func TestBadInput(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob", "carol", "zed")
	a, bb := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")
	bb.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"carol"}}, nil)
	bb.next() // member event
	bb.text("alice", "b-1", "hello alice")
	bb.next()
	hello := a.next()

	long := strings.Repeat("x", 8<<10+1)
	for _, tc := range []struct {
		name, kind, payload string
		code                int
	}{
		{"malformed json", "msg", `{"to":"bob",`, 400},
		{"malformed cbor", "msg", "\xff\x00\x01", 400},
		{"empty", "msg", "", 400},
		{"json array", "msg", `[1,2]`, 400},
		{"wrong type", "msg", `{"to":5,"cmid":"x","b":"hi"}`, 400},
		{"unknown op", "msg", `{"op":"zap","cmid":"x1"}`, 400},
		{"missing to", "msg", `{"cmid":"x2","b":"hi"}`, 400},
		{"missing cmid", "msg", `{"to":"bob","b":"hi"}`, 400},
		{"long cmid", "msg", `{"to":"bob","b":"hi","cmid":"` + strings.Repeat("c", 33) + `"}`, 400},
		{"missing body", "msg", `{"to":"bob","cmid":"x3"}`, 400},
		{"body too large", "msg", `{"to":"bob","cmid":"x4","b":"` + long + `"}`, 413},
		{"payload too large", "msg", `{"to":"bob","cmid":"x5","b":"` + long + long + `"}`, 413},
		{"unknown user", "msg", `{"to":"nobody","cmid":"x6","b":"hi"}`, 404},
		{"wildcard id", "msg", `{"to":"b+b","cmid":"x7","b":"hi"}`, 400},
		{"hash id", "msg", `{"to":"d:alice:#","cmid":"x8","b":"hi"}`, 400},
		{"slash id", "msg", `{"to":"bo/b","cmid":"x9","b":"hi"}`, 400},
		{"slash gid", "msg", `{"to":"g:ops/x","cmid":"x10","b":"hi"}`, 400},
		{"unsorted dm", "msg", `{"to":"d:bob:alice","cmid":"x11","b":"hi"}`, 400},
		{"foreign dm", "msg", `{"to":"d:bob:carol","cmid":"x12","b":"hi"}`, 403},
		{"non-member", "msg", `{"to":"g:ops","cmid":"x13","b":"hi"}`, 403},
		{"unknown group", "msg", `{"to":"g:nope","cmid":"x14","b":"hi"}`, 404},
		{"self", "msg", `{"to":"alice","cmid":"x15","b":"hi"}`, 400},
		{"bad ttl", "msg", `{"to":"bob","cmid":"x16","b":"hi","ttl":-1}`, 400},
		{"bad reply id", "msg", `{"to":"bob","cmid":"x17","b":"hi","re":"nope"}`, 400},
		{"unknown reply", "msg", `{"to":"bob","cmid":"x18","b":"hi","re":"01J9Z3K8Q4W6X2M7N5P0R8T1VB"}`, 404},
		{"edit unknown", "msg", `{"op":"edit","id":"01J9Z3K8Q4W6X2M7N5P0R8T1VB","cmid":"x19","b":"x"}`, 404},
		{"edit others", "msg", `{"op":"edit","id":"` + hello.ID.String() + `","cmid":"x20","b":"x"}`, 403},
		{"react no key", "msg", `{"op":"react","id":"` + hello.ID.String() + `","cmid":"x21"}`, 400},
		{"edit missing id", "msg", `{"op":"edit","cmid":"x22","b":"x"}`, 400},
		{"rcpt unknown conv", "rcpt", `{"cv":"d:alice:zed","k":"read","upto":5}`, 404},
		{"rcpt bad kind", "rcpt", `{"cv":"d:alice:bob","k":"seen","upto":1}`, 400},
		{"rcpt malformed", "rcpt", `{"cv":`, 400},
		{"rcpt non-member", "rcpt", `{"cv":"g:ops","k":"read","upto":1}`, 403},
		{"typ non-member", "typ", `{"cv":"g:ops","s":"c"}`, 403},
		{"typ bad state", "typ", `{"cv":"d:alice:bob","s":"z"}`, 400},
		{"rpc malformed", "rpc", `{"rid":`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.t = t
			a.pub(tc.kind, []byte(tc.payload))
			if e := a.nextErr(); e.Code != tc.code {
				t.Fatalf("code %d, want %d", e.Code, tc.code)
			}
		})
	}
	a.t = t
	// RPC errors come back as failed replies.
	a.fail("zap", nil, 400)
	a.fail("history", map[string]any{"cv": "g:ops"}, 403)
	a.fail("history", map[string]any{"cv": "g:x+y"}, 400)
	a.fail("history", map[string]any{"cv": "d:alice:bob", "before": 3, "after": 1}, 400)
	a.fail("msg.get", map[string]any{"id": "zz"}, 400)
	a.fail("msg.get", map[string]any{"id": "01J9Z3K8Q4W6X2M7N5P0R8T1VB"}, 404)
	a.fail("sync", map[string]any{"since": "x"}, 400)
	a.fail("hello", map[string]any{"enc": "xml"}, 400)
	a.fail("contacts.add", map[string]any{"uid": "nobody"}, 404)
	a.fail("contacts.add", map[string]any{"uid": "a/b"}, 400)
	a.fail("group.add", map[string]any{"gid": "ops", "uids": []string{"zed"}}, 403)
	a.fail("group.create", map[string]any{"gid": "ops"}, 409)
	a.fail("group.create", map[string]any{"gid": "a+b"}, 400)

	// The connection is still usable and nothing else happened.
	a.text("bob", "ok-1", "still here")
	if ev := bb.next(); ev.B != "still here" || ev.Seq != 2 {
		t.Fatalf("got %+v", ev)
	}
	if evs := bb.syncAll(0, 100); len(evs) != 3 {
		t.Fatalf("bob's stream has %d events, want 3", len(evs))
	}
	a.none(a.rpc, "extra reply")
}

// TestMQTT5 checks PUBACK reason codes and Correlation Data on replies.
func TestMQTT5(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	c, _, err := b.Dial5("alice", "p5", pw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: topics.DeviceFilter("alice", "p5"), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub := func(kind, payload string, props *paho5.PublishProperties) *paho5.PublishResponse {
		t.Helper()
		r, err := c.Publish(ctx, &paho5.Publish{Topic: topics.Up("alice", "p5", kind), QoS: 1, Payload: []byte(payload), Properties: props})
		if err != nil && r == nil {
			t.Fatalf("publish: %v", err)
		}
		return r
	}
	next := func() *paho5.Publish {
		t.Helper()
		select {
		case p := <-c.Msgs:
			return p
		case <-time.After(brokertest.Timeout):
			t.Fatal("timed out")
			return nil
		}
	}
	for _, tc := range []struct {
		payload string
		code    byte
	}{
		{`{"to":"nobody","cmid":"a","b":"x"}`, 0x83},
		{`{"to":"g:nope","cmid":"b","b":"x"}`, 0x83},
		{`{"to":"b+b","cmid":"c","b":"x"}`, 0x99},
		{`{"to":"bob","cmid":"d","b":"` + strings.Repeat("x", 9000) + `"}`, 0x99},
		{`garbage`, 0x99},
	} {
		r := pub("msg", tc.payload, nil)
		if r.ReasonCode != tc.code {
			t.Fatalf("%s: reason %#x, want %#x", tc.payload, r.ReasonCode, tc.code)
		}
		var ev codec.Event
		if err := codec.Decode(next().Payload, &ev); err != nil || ev.T != "err" {
			t.Fatalf("err event: %v %+v", err, ev)
		}
	}
	if r := pub("msg", `{"to":"bob","cmid":"ok","b":"x"}`, nil); r.ReasonCode != 0 {
		t.Fatalf("send: reason %#x", r.ReasonCode)
	}
	if p := next(); !strings.HasSuffix(p.Topic, "/in") {
		t.Fatalf("got %s", p.Topic)
	}
	pub("rpc", `{"rid":"r1","op":"conv.list"}`, &paho5.PublishProperties{
		ResponseTopic: topics.Device("alice", "p5", "rpc"), CorrelationData: []byte("corr-1"),
	})
	p := next()
	if p.Properties == nil || string(p.Properties.CorrelationData) != "corr-1" || !strings.Contains(string(p.Payload), `"d:alice:bob"`) {
		t.Fatalf("reply %s %+v", p.Payload, p.Properties)
	}
}

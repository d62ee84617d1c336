package messaging_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

const pw = "password-1"

// dev is a 3.1.1 test device subscribed to its own downstream topics.
type dev struct {
	t        testing.TB
	c        paho.Client
	uid, did string
	in       chan []byte
	rpc      chan []byte
	eph      chan []byte
	rid      atomic.Int64
}

func users(b *brokertest.Broker, uids ...string) {
	for _, u := range uids {
		b.AddUser(u, pw)
	}
}

func connect(t testing.TB, b *brokertest.Broker, uid, did string) *dev {
	t.Helper()
	// Ordered handling: the handler only queues, and tests check order.
	return connectOpts(t, b, b.ClientOptions(uid+"."+did, uid, pw).SetOrderMatters(true), uid, did)
}

func connectOpts(t testing.TB, b *brokertest.Broker, o *paho.ClientOptions, uid, did string) *dev {
	t.Helper()
	d := &dev{t: t, uid: uid, did: did, in: make(chan []byte, 20000), rpc: make(chan []byte, 1000), eph: make(chan []byte, 1000)}
	d.c = b.Connect(o)
	brokertest.Subscribe(t, d.c, topics.DeviceFilter(uid, did), 1, func(_ paho.Client, m paho.Message) {
		switch {
		case strings.HasSuffix(m.Topic(), "/in"):
			offer(d.in, m.Payload())
		case strings.HasSuffix(m.Topic(), "/rpc"):
			offer(d.rpc, m.Payload())
		case strings.HasSuffix(m.Topic(), "/eph"):
			offer(d.eph, m.Payload())
		}
	})
	return d
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pub publishes a raw payload to one of the device's upstream topics and
// waits for the PUBACK.
func (d *dev) pub(kind string, payload []byte) {
	d.t.Helper()
	brokertest.Wait(d.t, d.c.Publish(topics.Up(d.uid, d.did, kind), 1, false, payload), "publish "+kind)
}

// send sends a message command.
func (d *dev) send(m map[string]any) {
	d.t.Helper()
	d.pub(topics.UpMsg, mustJSON(d.t, m))
}

func (d *dev) text(to, cmid, body string) {
	d.t.Helper()
	d.send(map[string]any{"to": to, "cmid": cmid, "b": body})
}

type reply struct {
	RID string          `json:"rid"`
	OK  bool            `json:"ok"`
	R   json.RawMessage `json:"r"`
	Err *codec.ReplyErr `json:"err"`
	// err events
	T    string `json:"t"`
	Code int    `json:"code"`
	CMID string `json:"cmid"`
}

// call makes an RPC and returns its reply (JSON device).
func (d *dev) call(op string, args any) reply {
	d.t.Helper()
	rid := fmt.Sprintf("r%d", d.rid.Add(1))
	d.pub(topics.UpRPC, mustJSON(d.t, map[string]any{"rid": rid, "op": op, "a": args}))
	for {
		var r reply
		if err := json.Unmarshal(d.wait(d.rpc, "reply to "+op), &r); err != nil {
			d.t.Fatalf("reply: %v", err)
		}
		if r.RID == rid {
			return r
		}
	}
}

// ok makes an RPC that must succeed and decodes its result into out.
func (d *dev) ok(op string, args, out any) {
	d.t.Helper()
	r := d.call(op, args)
	if !r.OK {
		d.t.Fatalf("%s %v: %+v", op, args, r.Err)
	}
	if out != nil {
		if err := json.Unmarshal(r.R, out); err != nil {
			d.t.Fatalf("%s result: %v", op, err)
		}
	}
}

// fail makes an RPC that must fail with code.
func (d *dev) fail(op string, args any, code int) {
	d.t.Helper()
	r := d.call(op, args)
	if r.OK || r.Err == nil || r.Err.Code != code {
		d.t.Fatalf("%s %v: want error %d, got ok=%v err=%+v", op, args, code, r.OK, r.Err)
	}
}

func (d *dev) wait(ch chan []byte, what string) []byte {
	d.t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(brokertest.Timeout):
		d.t.Fatalf("%s.%s: timed out waiting for %s", d.uid, d.did, what)
		return nil
	}
}

// next returns the next event on the device's in topic.
func (d *dev) next() codec.Event {
	d.t.Helper()
	var ev codec.Event
	if err := codec.Decode(d.wait(d.in, "event"), &ev); err != nil {
		d.t.Fatalf("event: %v", err)
	}
	return ev
}

// nextErr returns the next err event on the rpc topic.
func (d *dev) nextErr() reply {
	d.t.Helper()
	var r reply
	if err := json.Unmarshal(d.wait(d.rpc, "err event"), &r); err != nil {
		d.t.Fatalf("err event: %v", err)
	}
	if r.T != "err" {
		d.t.Fatalf("want err event, got %+v", r)
	}
	return r
}

// none asserts nothing arrives on ch within a short while.
func (d *dev) none(ch chan []byte, what string) {
	d.t.Helper()
	select {
	case b := <-ch:
		d.t.Fatalf("%s.%s: unexpected %s: %s", d.uid, d.did, what, b)
	case <-time.After(150 * time.Millisecond):
	}
}

// syncAll syncs from since until more is false.
func (d *dev) syncAll(since uint64, max int) []codec.Event {
	d.t.Helper()
	var all []codec.Event
	for {
		var r codec.SyncResult
		d.ok("sync", map[string]any{"since": since, "max": max}, &r)
		if r.Reset {
			d.t.Fatalf("unexpected reset")
		}
		all = append(all, r.Ev...)
		since = r.Next
		if !r.More {
			return all
		}
	}
}

// offer hands a received value to the test without ever blocking the
// caller (paho's router, or the broker's publish path for server-side
// watches): a full channel drops the value, and the test waiting for it
// fails on its timeout instead of hanging the whole binary.
func offer[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

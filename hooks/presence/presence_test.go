package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/fxamacker/cbor/v2"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/hooks/presence"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// Short periods keep the integration tests quick; the timer logic itself
// is covered under synctest in tracker_test.go.
const (
	grace    = 300 * time.Millisecond
	coalesce = 50 * time.Millisecond
)

func start(t *testing.T, opts ...func(*config.Config)) *brokertest.Broker {
	t.Helper()
	opts = append([]func(*config.Config){func(c *config.Config) {
		c.WS.Addr, c.HTTP.Addr = "", ""
		c.Presence.Grace, c.Presence.Coalesce = grace, coalesce
	}}, opts...)
	b := brokertest.Start(t, opts...)
	for _, uid := range []string{"alice", "bob"} {
		b.AddUser(uid, "password-"+uid)
	}
	return b
}

// watcher sees every publication of one user's presence, from the server
// side (the ACL lets only alice's own devices read im/p/alice, and those
// would count as online).
type watcher struct {
	ch chan im.Presence
}

func watch(t *testing.T, b *brokertest.Broker, uid string) *watcher {
	t.Helper()
	w := &watcher{ch: make(chan im.Presence, 256)}
	stop, err := b.Watch(topics.Presence(uid), func(_ string, payload []byte) {
		var p im.Presence
		if err := json.Unmarshal(payload, &p); err != nil {
			t.Errorf("presence payload %q: %v", payload, err)
		}
		offer(w.ch, p)
	})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(stop)
	return w
}

// next returns the next publication.
func (w *watcher) next(t *testing.T) im.Presence {
	t.Helper()
	select {
	case p := <-w.ch:
		return p
	case <-time.After(brokertest.Timeout):
		t.Fatal("no presence published")
		return im.Presence{}
	}
}

// want returns the next publication and checks its status and devices.
func (w *watcher) want(t *testing.T, s string, d int) im.Presence {
	t.Helper()
	p := w.next(t)
	if p.S != s || p.D != d {
		t.Fatalf("presence %+v, want s=%s d=%d", p, s, d)
	}
	return p
}

// quiet checks that nothing is published for a while.
func (w *watcher) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case p := <-w.ch:
		t.Fatalf("unexpected presence %+v", p)
	case <-time.After(d):
	}
}

func publish(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	brokertest.Wait(t, c.Publish(topic, 1, false, payload), "publish "+topic)
}

func disconnect(c paho.Client) { c.Disconnect(100) }

// via sends a client through the proxy instead of straight to the broker.
func via(px *brokertest.Proxy, o *paho.ClientOptions) *paho.ClientOptions {
	o.Servers = nil
	return o.AddBroker(px.URL())
}

// withWill gives the options the presence will of PROTOCOL §3.
func withWill(o *paho.ClientOptions, uid, did string) *paho.ClientOptions {
	return o.SetWill(topics.Up(uid, did, topics.UpPres), `{"s":"off"}`, 1, false)
}

func TestConnectDisconnect(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	c := b.Dial("alice", "p1", "password-alice")
	on := w.want(t, "on", 1)
	if on.PV == 0 || time.Since(time.UnixMilli(on.LS)) > time.Minute {
		t.Fatalf("on %+v", on)
	}
	left := time.Now()
	disconnect(c)
	off := w.want(t, "off", 0)
	if since := time.Since(left); since < grace {
		t.Fatalf("off after %v, before the grace period of %v", since, grace)
	}
	if off.PV <= on.PV || off.LS < on.LS || off.LS > time.Now().UnixMilli() {
		t.Fatalf("off %+v after on %+v", off, on)
	}
	if p, err := b.Store().Presence("alice"); err != nil || p != off {
		t.Fatalf("stored %+v, %v; want %+v", p, err, off)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	c := b.Dial("alice", "p1", "password-alice")
	w.want(t, "on", 1)
	// alice's own device reads im/p/alice and sees the same.
	own := make(chan paho.Message, 16)
	if q := brokertest.Subscribe(t, c, topics.Presence("alice"), 1, func(_ paho.Client, m paho.Message) { own <- m }); q != 1 {
		t.Fatalf("own presence subscription granted %#x", q)
	}
	up := topics.Up("alice", "p1", topics.UpPres)
	publish(t, c, up, `{"s":"away","tx":"lunch"}`)
	if p := w.want(t, "away", 1); p.TX != "lunch" {
		t.Fatalf("tx %q", p.TX)
	}
	publish(t, c, up, `{"s":"busy"}`)
	if p := w.want(t, "busy", 1); p.TX != "lunch" {
		t.Fatalf("tx %q", p.TX)
	}
	publish(t, c, up, `{"tx":"on shift"}`)
	last := w.want(t, "busy", 1)
	if last.TX != "on shift" {
		t.Fatalf("tx %q", last.TX)
	}
	// Garbage is dropped, never routed, and the connection survives.
	publish(t, c, up, `{"s":"sleeping"}`)
	publish(t, c, up, `not json`)
	publish(t, c, up, "\xa1\x61s\x62on") // CBOR {"s":"on"}
	w.want(t, "on", 1)
	// The own subscription saw retained on, then each publication, and
	// never the commands themselves.
	deadline := time.After(brokertest.Timeout)
	for n := 0; n < 5; {
		select {
		case m := <-own:
			var p im.Presence
			if err := json.Unmarshal(m.Payload(), &p); err != nil || m.Topic() != topics.Presence("alice") {
				t.Fatalf("own device got %s %q", m.Topic(), m.Payload())
			}
			n++
		case <-deadline:
			t.Fatal("own device missed presence updates")
		}
	}
	if !c.IsConnectionOpen() {
		t.Fatal("bad presence payload closed the connection")
	}
}

func TestStatusMQTT5(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	c, _, err := b.Dial5("alice", "p5", "password-alice")
	if err != nil {
		t.Fatal(err)
	}
	w.want(t, "on", 1)
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	up := topics.Up("alice", "p5", topics.UpPres)
	res, err := c.Publish(ctx, &paho5.Publish{Topic: up, QoS: 1, Payload: []byte(`{"s":"nope"}`)})
	if err != nil || res.ReasonCode != 0 {
		t.Fatalf("bad payload: PUBACK %+v, %v; want success (dropped)", res, err)
	}
	res, err = c.Publish(ctx, &paho5.Publish{Topic: up, QoS: 1, Payload: []byte(`{"s":"away"}`)})
	if err != nil || res.ReasonCode != 0 {
		t.Fatalf("away: %+v, %v", res, err)
	}
	w.want(t, "away", 1)
	// Retained presence carries no expiry: it never expires by itself.
	if _, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: topics.Presence("alice"), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.Msgs:
		if !m.Retain || m.Properties.MessageExpiry != nil {
			t.Fatalf("retained presence %+v, expiry %v", m, m.Properties.MessageExpiry)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("no retained presence")
	}
}

func TestTwoDevices(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	p1 := b.Dial("alice", "p1", "password-alice")
	w.want(t, "on", 1)
	b.Dial("alice", "p2", "password-alice")
	w.want(t, "on", 2)
	disconnect(p1)
	w.want(t, "on", 1)
	w.quiet(t, 2*grace)
}

// TestTakeover: the device's old connection is half-open when it comes
// back with the same ClientID; the old connection's will and disconnect
// must not make alice go off.
func TestTakeover(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	px := b.Proxy()
	o := withWill(b.ClientOptions("alice.p1", "alice", "password-alice"), "alice", "p1")
	old := b.Connect(via(px, o))
	w.want(t, "on", 1)
	px.Freeze()
	disconnect(old) // nothing reaches the broker
	cur := b.Connect(withWill(b.ClientOptions("alice.p1", "alice", "password-alice"), "alice", "p1"))
	w.quiet(t, 3*grace)
	if p, err := b.Store().Presence("alice"); err != nil || p.S != "on" || p.D != 1 {
		t.Fatalf("after takeover stored %+v, %v", p, err)
	}
	// The device is counted once: its current connection going ends it.
	disconnect(cur)
	w.want(t, "off", 0)
}

// TestCutAndGrace: a cut connection that comes back within the grace
// period leaves no trace; one that does not ends in off after it.
func TestCutAndGrace(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	px := b.Proxy()
	o := func() *paho.ClientOptions {
		return via(px, withWill(b.ClientOptions("alice.p1", "alice", "password-alice"), "alice", "p1"))
	}
	b.Connect(o())
	w.want(t, "on", 1)
	px.Cut()
	b.Connect(o())
	w.quiet(t, 2*grace)
	cut := time.Now()
	px.Cut()
	w.want(t, "off", 0)
	if since := time.Since(cut); since < grace {
		t.Fatalf("off %v after the cut, inside the grace period", since)
	}
}

// TestSessionRemovedWithoutDisconnect: a session the registry drops
// without an OnDisconnect (the auth hook's sweep of connections mochi
// closed after a failed CONNACK write) takes the device off, through the
// grace period like any other departure.
func TestSessionRemovedWithoutDisconnect(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	b.Dial("alice", "p1", "password-alice")
	w.want(t, "on", 1)
	var victim *mqtt.Client
	b.Sessions().Range(func(cl *mqtt.Client, s *session.Session) bool {
		if s.UID == "alice" {
			victim = cl
		}
		return victim == nil
	})
	if victim == nil || !b.Sessions().Remove(victim) {
		t.Fatal("alice's session not in the registry")
	}
	removed := time.Now()
	w.want(t, "off", 0)
	if since := time.Since(removed); since < grace {
		t.Fatalf("off %v after the removal, inside the grace period", since)
	}
}

// TestKeepaliveExpiry: a device that vanishes without a word is off within
// 1.5 × keepalive + grace.
func TestKeepaliveExpiry(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	px := b.Proxy()
	const keepalive = 2 * time.Second
	o := via(px, b.ClientOptions("alice.p1", "alice", "password-alice")).SetKeepAlive(keepalive)
	b.Connect(o)
	w.want(t, "on", 1)
	gone := time.Now()
	px.Freeze()
	w.want(t, "off", 0)
	took := time.Since(gone)
	// Scheduling slack on a loaded machine: half a second.
	if limit := keepalive*3/2 + grace + 500*time.Millisecond; took > limit {
		t.Fatalf("off after %v, want within %v", took, limit)
	}
	t.Logf("off %v after the device vanished (keepalive %v, grace %v)", took, keepalive, grace)
}

// TestRestart: retained presence is rebuilt from the store as off with the
// last seen time, and pv keeps increasing.
func TestRestart(t *testing.T) {
	t.Parallel()
	b := start(t)
	w := watch(t, b, "alice")
	b.Dial("alice", "p1", "password-alice")
	on := w.want(t, "on", 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()

	b2 := brokertest.StartConfig(t, b.Config)
	w2 := watch(t, b2, "alice") // retained first
	off := w2.want(t, "off", 0)
	if off.PV <= on.PV || off.LS < on.LS || off.LS > closed.UnixMilli() {
		t.Fatalf("rebuilt %+v after %+v (closed at %d)", off, on, closed.UnixMilli())
	}
	b2.Dial("alice", "p1", "password-alice")
	if p := w2.want(t, "on", 1); p.PV <= off.PV {
		t.Fatalf("pv %d after rebuilt %d", p.PV, off.PV)
	}
}

// TestReadACL: presence is readable by the user itself and its contacts
// only, by exact topic (PROTOCOL §10). bob is not alice's contact.
func TestReadACL(t *testing.T) {
	t.Parallel()
	b := start(t)
	b.Dial("alice", "p1", "password-alice")
	bob := b.Dial("bob", "p1", "password-bob")
	got := make(chan paho.Message, 4)
	h := func(_ paho.Client, m paho.Message) { got <- m }
	for _, f := range []string{topics.Presence("alice"), "im/p/+", "im/p/#", "im/#"} {
		if q := brokertest.Subscribe(t, bob, f, 1, h); q != 0x80 {
			t.Errorf("bob subscribing %s granted %#x", f, q)
		}
	}
	if q := brokertest.Subscribe(t, bob, topics.Presence("bob"), 1, h); q != 1 {
		t.Fatalf("bob's own presence granted %#x", q)
	}
	select {
	case m := <-got:
		if m.Topic() != topics.Presence("bob") {
			t.Fatalf("bob received %s", m.Topic())
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("no retained own presence")
	}
	// Nobody but the server writes presence.
	c5, _, err := b.Dial5("bob", "p5", "password-bob")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	res, err := c5.Publish(ctx, &paho5.Publish{Topic: topics.Presence("bob"), QoS: 1, Retain: true, Payload: []byte(`{"s":"busy","pv":999999}`)})
	if res == nil || res.ReasonCode != 0x87 {
		t.Fatalf("publishing presence: %+v, %v; want PUBACK 0x87", res, err)
	}
	if p := watch(t, b, "bob").next(t); p.PV > 100 || p.S != "on" {
		t.Fatalf("retained bob %+v", p)
	}
}

// TestBlip: every connection is cut at once (a proxy or load balancer
// restarting) and every device reconnects at once, with real clients:
// presence publishes nothing. The coalescing window (5 s) is far longer
// than the reconnect takes, so a slow machine cannot make the test pass
// or fail by accident; instead of sleeping to see nothing happen, each
// user then sets "away", and that must be the user's very next
// publication (pv one above the last, both devices counted).
func TestBlip(t *testing.T) {
	t.Parallel()
	const users = 10
	b := start(t, func(c *config.Config) { c.Presence.Grace, c.Presence.Coalesce = 30*time.Second, 5*time.Second })
	type pub struct {
		uid string
		p   im.Presence
	}
	seen := make(chan pub, 1024)
	stop, err := b.Watch("im/p/+", func(topic string, payload []byte) {
		var p im.Presence
		if err := json.Unmarshal(payload, &p); err != nil {
			t.Errorf("presence payload %q: %v", payload, err)
		}
		seen <- pub{strings.TrimPrefix(topic, "im/p/"), p}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	px := b.Proxy()
	opts := func(u, d int) *paho.ClientOptions {
		uid, did := fmt.Sprintf("user%d", u), fmt.Sprintf("d%d", d)
		return via(px, withWill(b.ClientOptions(uid+"."+did, uid, "password-"+uid), uid, did))
	}
	for u := range users {
		b.AddUser(fmt.Sprintf("user%d", u), fmt.Sprintf("password-user%d", u))
		for d := range 2 {
			b.Connect(opts(u, d))
		}
	}
	// Settled: one on per user, then one d:2 a window later.
	last := map[string]im.Presence{}
	for len(last) < users || func() bool {
		for _, p := range last {
			if p.D != 2 {
				return true
			}
		}
		return false
	}() {
		select {
		case x := <-seen:
			last[x.uid] = x.p
		case <-time.After(2 * brokertest.Timeout):
			t.Fatalf("not settled before the blip: %+v", last)
		}
	}
	px.Cut()
	var c0 []paho.Client
	for u := range users {
		for d := range 2 {
			c := b.Connect(opts(u, d))
			if d == 0 {
				c0 = append(c0, c)
			}
		}
	}
	for u, c := range c0 {
		uid := fmt.Sprintf("user%d", u)
		brokertest.Wait(t, c.Publish(topics.Up(uid, "d0", topics.UpPres), 1, false, `{"s":"away"}`), "away")
	}
	for range users {
		select {
		case x := <-seen:
			want := last[x.uid]
			want.PV++
			if x.p.S != "away" || x.p.PV != want.PV || x.p.D != 2 {
				t.Fatalf("%s after the blip: %+v, want away with pv %d and d:2 (before: %+v)", x.uid, x.p, want.PV, last[x.uid])
			}
		case <-time.After(2 * brokertest.Timeout):
			t.Fatal("no away publication")
		}
	}
}

// TestBadCommandErr: a presence command the hook cannot use is
// acknowledged without a reason code and answered with an err event
// (code 400) on the device's …/rpc, in the device's encoding.
func TestBadCommandErr(t *testing.T) {
	t.Parallel()
	b := start(t)
	c5, _, err := b.Dial5("alice", "p5", "password-alice")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	if _, err := c5.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{
		{Topic: topics.DeviceFilter("alice", "p5"), QoS: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	up := topics.Up("alice", "p5", topics.UpPres)
	for _, bad := range []string{`{"s":"sleeping"}`, `not json`, `{}`} {
		res, err := c5.Publish(ctx, &paho5.Publish{Topic: up, QoS: 1, Payload: []byte(bad)})
		if err != nil || res.ReasonCode != 0 {
			t.Fatalf("%s: PUBACK %+v, %v; want success", bad, res, err)
		}
		select {
		case m := <-c5.Msgs:
			var ev struct {
				T    string `json:"t"`
				Code int    `json:"code"`
				Msg  string `json:"msg"`
			}
			if m.Topic != topics.Device("alice", "p5", topics.ChanRPC) || json.Unmarshal(m.Payload, &ev) != nil ||
				ev.T != "err" || ev.Code != 400 || ev.Msg == "" {
				t.Fatalf("%s: got %s %q", bad, m.Topic, m.Payload)
			}
		case <-time.After(brokertest.Timeout):
			t.Fatalf("%s: no err event", bad)
		}
	}
	// A CBOR device gets its err events in CBOR.
	hello := []byte(`{"rid":"h","op":"hello","a":{"enc":"cbor"}}`)
	res, err := c5.Publish(ctx, &paho5.Publish{Topic: topics.Up("alice", "p5", topics.UpRPC), QoS: 1, Payload: hello})
	if err != nil || res.ReasonCode != 0 {
		t.Fatalf("hello: %+v, %v", res, err)
	}
	select {
	case <-c5.Msgs: // the hello reply (JSON)
	case <-time.After(brokertest.Timeout):
		t.Fatal("no hello reply")
	}
	if res, err = c5.Publish(ctx, &paho5.Publish{Topic: up, QoS: 1, Payload: []byte(`{"s":1}`)}); err != nil || res.ReasonCode != 0 {
		t.Fatalf("bad cbor-device command: %+v, %v", res, err)
	}
	select {
	case m := <-c5.Msgs:
		var ev codec.Event
		if err := cbor.Unmarshal(m.Payload, &ev); err != nil || ev.T != "err" || ev.Code != 400 {
			t.Fatalf("cbor err event %x: %+v, %v", m.Payload, ev, err)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("no cbor err event")
	}
	// A good command gets no err event.
	res, err = c5.Publish(ctx, &paho5.Publish{Topic: up, QoS: 1, Payload: []byte(`{"s":"away"}`)})
	if err != nil || res.ReasonCode != 0 {
		t.Fatalf("away: %+v, %v", res, err)
	}
	select {
	case m := <-c5.Msgs:
		t.Fatalf("unexpected %s %q", m.Topic, m.Payload)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestWatchedEph: a presence change goes to the …/eph of the live devices
// of the user's contacts (visible both ways), not to one-way contacts,
// blockers or strangers.
func TestWatchedEph(t *testing.T) {
	t.Parallel()
	b := start(t)
	for _, uid := range []string{"carol", "dave", "erin"} {
		b.AddUser(uid, "password-"+uid)
	}
	st := b.Store()
	for _, c := range [][2]string{{"alice", "bob"}, {"bob", "alice"}, {"carol", "alice"}, {"alice", "dave"}, {"dave", "alice"}} {
		if err := st.SetContact(c[0], c[1], true); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetBlock("dave", "alice", true); err != nil {
		t.Fatal(err)
	}
	eph := map[string]chan []byte{}
	for _, uid := range []string{"bob", "carol", "dave", "erin"} {
		ch := make(chan []byte, 16)
		eph[uid] = ch
		c := b.Dial(uid, "x1", "password-"+uid)
		brokertest.Subscribe(t, c, topics.DeviceFilter(uid, "x1"), 1, func(_ paho.Client, m paho.Message) {
			if m.Topic() == topics.Device(uid, "x1", topics.ChanEph) {
				offer(ch, m.Payload())
			}
		})
	}
	type pres struct {
		T   string `json:"t"`
		UID string `json:"uid"`
		im.Presence
	}
	next := func(what string) pres {
		t.Helper()
		select {
		case b := <-eph["bob"]:
			var p pres
			if err := json.Unmarshal(b, &p); err != nil || p.T != "pres" || p.UID != "alice" {
				t.Fatalf("%s: eph %q, %v", what, b, err)
			}
			return p
		case <-time.After(brokertest.Timeout):
			t.Fatalf("%s: no eph presence", what)
			return pres{}
		}
	}
	a := b.Dial("alice", "p1", "password-alice")
	on := next("on")
	if on.S != "on" || on.D != 1 || on.PV == 0 {
		t.Fatalf("on %+v", on)
	}
	publish(t, a, topics.Up("alice", "p1", topics.UpPres), `{"s":"away","tx":"lunch"}`)
	if p := next("away"); p.S != "away" || p.TX != "lunch" || p.PV <= on.PV {
		t.Fatalf("away %+v after %+v", p, on)
	}
	for _, uid := range []string{"carol", "dave", "erin"} {
		select {
		case m := <-eph[uid]:
			t.Fatalf("%s got %q", uid, m)
		default:
		}
	}
	disconnect(a)
	if p := next("off"); p.S != "off" || p.D != 0 {
		t.Fatalf("off %+v", p)
	}
	<-time.After(100 * time.Millisecond) // deliveries in flight land
	for _, uid := range []string{"carol", "dave", "erin"} {
		select {
		case m := <-eph[uid]:
			t.Fatalf("%s got %q", uid, m)
		default:
		}
	}
}

// TestWatchedEphBound: a user with more than MaxWatched contacts is not
// pushed on …/eph (the retained im/p/{uid} still is).
func TestWatchedEphBound(t *testing.T) {
	t.Parallel()
	b := start(t)
	st := b.Store()
	for _, c := range [][2]string{{"alice", "bob"}, {"bob", "alice"}} {
		if err := st.SetContact(c[0], c[1], true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range presence.MaxWatched {
		if err := st.SetContact("alice", fmt.Sprintf("u%d", i), true); err != nil {
			t.Fatal(err)
		}
	}
	ch := make(chan []byte, 16)
	c := b.Dial("bob", "b1", "password-bob")
	brokertest.Subscribe(t, c, topics.Device("bob", "b1", topics.ChanEph), 0, func(_ paho.Client, m paho.Message) { offer(ch, m.Payload()) })
	w := watch(t, b, "alice")
	b.Dial("alice", "p1", "password-alice")
	w.want(t, "on", 1)
	select {
	case m := <-ch:
		t.Fatalf("eph with %d contacts: %q", presence.MaxWatched+1, m)
	case <-time.After(200 * time.Millisecond):
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

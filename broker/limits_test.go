package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/topics"
)

// TestSubscriptionCap: a client holds at most limits.max_subscriptions
// filters; beyond it SUBACK answers 0x97 (MQTT 5) or 0x80 (3.1.1), while
// re-subscribing a held filter still succeeds. On the old code every
// filter was granted (4,000 exact topics cost ~340 MB).
func TestSubscriptionCap(t *testing.T) {
	t.Parallel()
	const max = 3
	b := brokertest.Start(t, func(c *config.Config) {
		c.Limits.MaxSubscriptions = max
		c.ACL.Rules = []config.Rule{{Filter: "status/#", Access: "readwrite", Users: []string{"all"}}}
	})
	b.AddUser("alice", pw)
	filters := []string{"status/1", "status/2", "status/3", "status/4", "status/5"}

	t.Run("mqtt3", func(t *testing.T) {
		c := b.Dial("alice", "p3", pw)
		want := map[string]byte{"status/1": 1, "status/2": 1, "status/3": 1, "status/4": 0x80, "status/5": 0x80}
		subs := map[string]byte{}
		for _, f := range filters {
			subs[f] = 1
		}
		tok := c.SubscribeMultiple(subs, func(paho.Client, paho.Message) {})
		brokertest.Wait(t, tok, "subscribe")
		got := tok.(*paho.SubscribeToken).Result()
		// paho sends a map in random order: which three are granted
		// varies; count them.
		granted, refused := 0, 0
		for f, code := range got {
			switch code {
			case 1:
				granted++
			case 0x80:
				refused++
			default:
				t.Errorf("%s: code %#x", f, code)
			}
		}
		if granted != max || refused != len(filters)-max {
			t.Fatalf("granted %d, refused %d: %v (want %v in some order)", granted, refused, got, want)
		}
		// A held filter can be subscribed again at the cap.
		for f, code := range got {
			if code == 1 {
				if q := brokertest.Subscribe(t, c, f, 0, func(paho.Client, paho.Message) {}); q != 0 {
					t.Fatalf("re-subscribe %s: %#x", f, q)
				}
				break
			}
		}
	})
	t.Run("mqtt5", func(t *testing.T) {
		c5, _, err := b.Dial5("alice", "p5", pw)
		if err != nil {
			t.Fatal(err)
		}
		s := &paho5.Subscribe{}
		for _, f := range filters {
			s.Subscriptions = append(s.Subscriptions, paho5.SubscribeOptions{Topic: f, QoS: 1})
		}
		ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
		defer cancel()
		sa, err := c5.Subscribe(ctx, s)
		if sa == nil {
			t.Fatalf("subscribe: %v", err)
		}
		want := []byte{1, 1, 1, 0x97, 0x97}
		if string(sa.Reasons) != string(want) {
			t.Fatalf("SUBACK reasons %x, want %x", sa.Reasons, want)
		}
		// Re-subscribing a held filter at the cap is granted.
		sa, err = c5.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "status/2", QoS: 0}}})
		if err != nil || sa == nil || sa.Reasons[0] != 0 {
			t.Fatalf("re-subscribe: %v %+v", err, sa)
		}
	})
	if n := testutil.ToFloat64(b.Metrics().SubscribeRefused); n != 4 {
		t.Errorf("tern_subscribe_refused_total = %v, want 4", n)
	}
}

// rawDevice is an MQTT 3.1.1 IM device on a bare TCP connection that
// never acknowledges a delivery. Every PUBLISH on its in topic is counted
// into in.
func rawDevice(t *testing.T, b *brokertest.Broker, uid, did string) chan struct{} {
	t.Helper()
	nc, err := net.Dial("tcp", b.Addr(broker.ListenerMQTT))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.ClientIdentifier, cp.Keepalive, cp.CleanSession = uid+"."+did, 60, true
	cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = true, uid, true, []byte(pw)
	if err := cp.Write(nc); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(nc); err != nil {
		t.Fatal(err)
	} else if ca, ok := p.(*packets.ConnackPacket); !ok || ca.ReturnCode != 0 {
		t.Fatalf("connack %v", p)
	}
	sp := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sp.MessageID, sp.Topics, sp.Qoss = 1, []string{topics.DeviceFilter(uid, did)}, []byte{1}
	if err := sp.Write(nc); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(nc); err != nil {
		t.Fatal(err)
	} else if sa, ok := p.(*packets.SubackPacket); !ok || sa.ReturnCodes[0] != 1 {
		t.Fatalf("suback %v", p)
	}
	in := make(chan struct{}, 10000)
	go func() {
		for {
			p, err := packets.ReadPacket(nc)
			if err != nil {
				return // closed at cleanup
			}
			if pub, ok := p.(*packets.PublishPacket); ok && strings.HasSuffix(pub.TopicName, "/in") {
				in <- struct{}{}
			}
		}
	}()
	return in
}

// TestInflightBytesCap: a device that never sends PUBACK is sent 60 DMs
// of 7 KB; the broker holds at most limits.max_inflight_bytes of them
// (dropping the oldest, counted in tern_inflight_dropped_total) instead
// of all of them. On the old code all 60 (~420 KB) stayed pinned.
func TestInflightBytesCap(t *testing.T) {
	t.Parallel()
	const max, n = 128 << 10, 60
	b := brokertest.Start(t, func(c *config.Config) { c.Limits.MaxInflightBytes = max })
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	in := rawDevice(t, b, "alice", "p1")
	bob := b.Dial("bob", "b1", pw)
	body := strings.Repeat("x", 7000)
	for i := range n {
		p, err := json.Marshal(map[string]any{"to": "alice", "cmid": fmt.Sprint("c", i), "b": body})
		if err != nil {
			t.Fatal(err)
		}
		brokertest.Wait(t, bob.Publish(topics.Up("bob", "b1", topics.UpMsg), 1, false, p), "send")
	}
	for i := range n {
		select {
		case <-in:
		case <-time.After(brokertest.Timeout):
			t.Fatalf("alice received %d of %d deliveries", i, n)
		}
	}
	if got := b.InflightBytes("alice.p1"); got > max || got <= 0 {
		t.Fatalf("alice.p1 holds %d in-flight bytes, cap %d", got, max)
	}
	if d := testutil.ToFloat64(b.Metrics().InflightDropped); d < 1 {
		t.Fatalf("tern_inflight_dropped_total = %v", d)
	}
}

// expiryWatch reports the ids of expired sessions, after the production
// hooks have seen them.
type expiryWatch struct {
	mqtt.HookBase
	ids chan string
}

func (h *expiryWatch) ID() string           { return "test-expiry-watch" }
func (h *expiryWatch) Provides(b byte) bool { return b == mqtt.OnClientExpired }
func (h *expiryWatch) Init(any) error       { return nil }
func (h *expiryWatch) OnClientExpired(cl *mqtt.Client) {
	select {
	case h.ids <- cl.ID:
	default:
	}
}

// TestSubscriptionsEndWithSession: a persistent session's subscriptions
// are removed from the topic index when the session expires (mochi deletes
// the expired client but left its subscriptions there for good).
func TestSubscriptionsEndWithSession(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.Limits.MaxSessionExpiry = time.Second
		c.ACL.Rules = []config.Rule{{Filter: "status/#", Access: "readwrite", Users: []string{"all"}}}
	})
	b.AddUser("alice", pw)
	watch := &expiryWatch{ids: make(chan string, 16)}
	if err := b.AddHook(watch, nil); err != nil {
		t.Fatal(err)
	}
	c := b.Connect(b.ClientOptions("alice.p9", "alice", pw).SetCleanSession(false))
	filters := []string{"status/1", "status/2"}
	for _, f := range filters {
		brokertest.Subscribe(t, c, f, 1, func(paho.Client, paho.Message) {})
		if !b.Subscribed("alice.p9", f) {
			t.Fatalf("%s not in the topic index while connected", f)
		}
	}
	c.Disconnect(100)
	for {
		select {
		case id := <-watch.ids:
			if id != "alice.p9" {
				continue
			}
			for _, f := range filters {
				if b.Subscribed("alice.p9", f) {
					t.Errorf("%s outlived the expired session", f)
				}
			}
			return
		case <-time.After(brokertest.Timeout):
			t.Fatal("the session never expired")
		}
	}
}

// TestOfflineQueueBytesCap: deliveries queued for a disconnected
// persistent session count against limits.max_inflight_bytes too. On the
// old code all 60 deliveries of 7 KB (~420 KB) were kept for the session's
// lifetime.
func TestOfflineQueueBytesCap(t *testing.T) {
	t.Parallel()
	const max, n = 128 << 10, 60
	b := brokertest.Start(t, func(c *config.Config) {
		c.Limits.MaxInflightBytes = max
		c.ACL.Rules = []config.Rule{
			{Filter: "status/#", Access: "readwrite", Users: []string{"all"}},
			{Filter: "fence/#", Access: "write", Users: []string{"all"}},
		}
	})
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	a := b.Connect(b.ClientOptions("alice.q1", "alice", pw).SetCleanSession(false))
	brokertest.Subscribe(t, a, "status/#", 1, func(paho.Client, paho.Message) {})
	a.Disconnect(100) // the session stays, and nothing will acknowledge
	bob := b.Connect(b.ClientOptions("bob.b1", "bob", pw).SetOrderMatters(true))
	body := []byte(strings.Repeat("y", 7000))
	for range n {
		brokertest.Wait(t, bob.Publish("status/bob", 1, false, body), "publish")
	}
	// mochi routes a client's publishes one after another on its
	// goroutine: once this one is acknowledged, the 60 were routed.
	brokertest.Wait(t, bob.Publish("fence/bob", 1, false, []byte("x")), "fence")
	if got := b.InflightBytes("alice.q1"); got > max || got <= 0 {
		t.Fatalf("alice.q1 holds %d queued bytes, cap %d", got, max)
	}
}

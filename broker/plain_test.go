package broker_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
)

// plainBroker allows every authenticated user the plain namespace.
func plainBroker(t *testing.T) *brokertest.Broker {
	t.Helper()
	b := brokertest.Start(t, func(c *config.Config) {
		c.ACL.Rules = []config.Rule{{Filter: "tele/#", Access: "readwrite", Users: []string{"all"}}}
	})
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	return b
}

func collect(ch chan string) paho.MessageHandler {
	return func(_ paho.Client, m paho.Message) {
		select {
		case ch <- string(m.Payload()):
		default:
		}
	}
}

// TestOfflineQueueing: QoS 1 publishes to a persistent 3.1.1 session
// whose connection is gone are queued and delivered on its return (the
// ACL judges them with the identity the session authenticated with).
func TestOfflineQueueing(t *testing.T) {
	t.Parallel()
	b := plainBroker(t)
	got := make(chan string, 10)
	o := b.ClientOptions("bob.p1", "bob", pw).SetCleanSession(false).SetOrderMatters(true)
	o.SetDefaultPublishHandler(collect(got))
	bob := paho.NewClient(o)
	brokertest.Wait(t, bob.Connect(), "connect")
	brokertest.Wait(t, bob.Subscribe("tele/bob", 1, collect(got)), "subscribe")
	brokertest.Disconnect(t, bob)

	alice := b.Dial("alice", "p1", pw)
	for _, p := range []string{"one", "two"} {
		brokertest.Wait(t, alice.Publish("tele/bob", 1, false, p), "publish")
	}
	bob = paho.NewClient(o)
	brokertest.Wait(t, bob.Connect(), "reconnect")
	defer brokertest.Disconnect(t, bob)
	// mochi resends a returning session's queue sorted by whole-second
	// timestamps only, so plain-MQTT order across a reconnect is not
	// guaranteed (IM devices get their order from us): compare as a set.
	seen := map[string]bool{}
	for range 2 {
		select {
		case p := <-got:
			seen[p] = true
		case <-time.After(brokertest.Timeout):
			t.Fatalf("queued messages never delivered; got %v", seen)
		}
	}
	if !seen["one"] || !seen["two"] {
		t.Fatalf("delivered %v, want one and two", seen)
	}
}

// TestDollarPublishIsASink: a publish under $ is acknowledged and
// discarded; the 3.1.1 client stays connected.
func TestDollarPublishIsASink(t *testing.T) {
	t.Parallel()
	b := plainBroker(t)
	c := b.Dial("alice", "p1", pw)
	brokertest.Wait(t, c.Publish("$TopicA/x", 1, false, "x"), "publish under $")
	brokertest.Wait(t, c.Publish("tele/alice", 1, false, "after"), "publish after")
	if !c.IsConnectionOpen() {
		t.Fatal("publishing under $ closed the connection")
	}
}

// TestSharedSubscriptionPlainOnly: $share works over the plain namespace
// (each message to one member of the group) and never over im/.
func TestSharedSubscriptionPlainOnly(t *testing.T) {
	t.Parallel()
	b := plainBroker(t)
	got := make(chan string, 10)
	w1, w2 := b.Dial("bob", "w1", pw), b.Dial("bob", "w2", pw)
	for _, w := range []paho.Client{w1, w2} {
		if code := brokertest.Subscribe(t, w, "$share/workers/tele/jobs", 1, collect(got)); code != 1 {
			t.Fatalf("shared subscription refused: %#x", code)
		}
	}
	if code := brokertest.Subscribe(t, w1, "$share/workers/im/u/bob/d/w1/#", 1, collect(got)); code != 0x80 {
		t.Fatalf("shared subscription over im/ granted: %#x", code)
	}
	alice := b.Dial("alice", "p1", pw)
	const n = 6
	for range n {
		brokertest.Wait(t, alice.Publish("tele/jobs", 1, false, "job"), "publish")
	}
	for i := range n {
		select {
		case <-got:
		case <-time.After(brokertest.Timeout):
			t.Fatalf("job %d not delivered", i)
		}
	}
	select {
	case <-got:
		t.Fatal("a job was delivered twice")
	case <-time.After(200 * time.Millisecond):
	}
}

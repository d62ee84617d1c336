package broker_test

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/topics"
)

// TestRetainedWillNotKept: devices whose retained wills (120 KB each) sit
// on their own upstream msg topic disconnect uncleanly. No will may become
// a retained message, so the retained store does not grow with the number
// of wills (issue 9 item 3: hundreds of such wills grew RSS by 80 MB). On
// the old code each will was retained on im/up/alice/{did}/msg.
func TestRetainedWillNotKept(t *testing.T) {
	t.Parallel()
	const n = 40
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	fired := make(chan string, 2*n)
	for _, f := range []string{"im/up/#", topics.WillRoot + "#"} {
		stop, err := b.Watch(f, func(topic string, _ []byte) {
			select {
			case fired <- topic:
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	payload := bytes.Repeat([]byte("w"), 120<<10)
	cuts := make([]func(), n)
	for i := range cuts {
		did := fmt.Sprintf("d%02d", i)
		var mu sync.Mutex
		var conn net.Conn
		o := b.ClientOptions("alice."+did, "alice", pw).
			SetBinaryWill(topics.Up("alice", did, topics.UpMsg), payload, 1, true).
			SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
				c, err := net.Dial("tcp", b.Addr(broker.ListenerMQTT))
				mu.Lock()
				conn = c
				mu.Unlock()
				return c, err
			})
		b.Connect(o)
		cuts[i] = func() {
			mu.Lock()
			defer mu.Unlock()
			conn.Close()
		}
	}
	base := b.RetainedTotal()
	for _, cut := range cuts {
		cut()
	}
	for i := range n {
		select {
		case <-fired:
		case <-time.After(brokertest.Timeout):
			t.Fatalf("%d of %d wills fired", i, n)
		}
	}
	if k := b.RetainedCount("im/up/#") + b.RetainedCount(topics.WillRoot+"#"); k != 0 {
		t.Errorf("%d wills kept as retained messages", k)
	}
	// Presence may rewrite alice's own retained topic, never add per will.
	if got := b.RetainedTotal(); got > base {
		t.Errorf("retained messages grew from %d to %d after %d wills", base, got, n)
	}
}

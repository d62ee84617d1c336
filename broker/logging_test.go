package broker_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/topics"
)

// syncBuffer is a log sink safe for the broker's goroutines; seen is
// closed when a line containing mark is written.
type syncBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	mark string
	seen chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mark != "" && bytes.Contains(p, []byte(s.mark)) {
		close(s.seen)
		s.mark = ""
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestClientFaultsAreNotServerErrors drives the client mistakes the
// issue saw logged as level=ERROR or WARN (a DM to an unknown user, an
// unknown RPC op, a publish into another user's tree; also a 501 for what
// is not built yet) through a real
// broker logging at debug, and checks that none logs above info and that
// the ACL denial names the topic.
func TestClientFaultsAreNotServerErrors(t *testing.T) {
	t.Parallel()
	out := syncBuffer{mark: `msg="error processing packet"`, seen: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := brokertest.StartLogged(t, brokertest.Config(t), log)
	b.AddUser("alice", pw)

	// MQTT 5: a DM to an unknown user gets PUBACK 0x83 (mochi logged
	// "publish packet error" at ERROR).
	nc5, _, err := b.Dial5("alice", "p5", pw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	r, err := nc5.Publish(ctx, &paho5.Publish{Topic: topics.Up("alice", "p5", "msg"), QoS: 1,
		Payload: []byte(`{"to":"nobody","cmid":"c1","b":"hi"}`)})
	if r == nil || r.ReasonCode != 0x83 {
		t.Fatalf("DM to unknown user: %+v %v", r, err)
	}

	// 3.1.1: an unknown RPC op, then a publish into bob's tree, which
	// closes the connection (mochi logged a WARN without the topic).
	lost := make(chan struct{})
	o := b.ClientOptions("alice.p1", "alice", pw).SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(o)
	brokertest.Wait(t, c.Connect(), "connect")
	brokertest.Wait(t, c.Publish(topics.Up("alice", "p1", "rpc"), 1, false, `{"rid":"r1","op":"zap"}`), "rpc")
	// An op that is not built yet answers 501: not a server fault either.
	brokertest.Wait(t, c.Publish(topics.Up("alice", "p1", "rpc"), 1, false, `{"rid":"r2","op":"key.upload"}`), "rpc 501")
	brokertest.Wait(t, c.Publish(topics.Up("alice", "p1", "call"), 1, false, `{"call":"c1","op":"invite","to":"alice"}`), "call 501")
	c.Publish(topics.Up("bob", "p1", "msg"), 1, false, `{"to":"alice","cmid":"x","b":"hi"}`)
	select {
	case <-lost:
	case <-time.After(brokertest.Timeout):
		t.Fatal("publish into another user's tree did not close the connection")
	}

	// mochi logs the disconnect after closing the connection: wait for
	// the line.
	select {
	case <-out.seen:
	case <-time.After(brokertest.Timeout):
		t.Fatal("no log line for the closed connection")
	}
	logs := out.String()
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			t.Errorf("client fault logged as a server problem: %s", line)
		}
	}
	if !strings.Contains(logs, "level=INFO msg=\"error processing packet\"") || !strings.Contains(logs, "topic=im/up/bob/p1/msg") {
		t.Errorf("ACL denial not logged at info with its topic:\n%s", logs)
	}
	if !strings.Contains(logs, "level=DEBUG msg=\"publish packet error\"") {
		t.Errorf("refused publish not logged at debug:\n%s", logs)
	}
}

package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/client"
)

// exampleAddr is the MQTT address of the broker the examples talk to.
var exampleAddr string

// TestMain starts one real broker for the examples, which have no
// testing.T of their own.
func TestMain(m *testing.M) {
	tb := &mainTB{}
	b := brokertest.Start(tb)
	b.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	exampleAddr = b.Addr(broker.ListenerMQTT)
	code := m.Run()
	tb.cleanup()
	os.Exit(code)
}

// mainTB is the part of testing.TB that brokertest uses, for TestMain.
type mainTB struct {
	testing.TB // nil: any other method panics
	cleanups   []func()
	dirs       []string
}

func (*mainTB) Helper()                   {}
func (*mainTB) Log(...any)                {}
func (*mainTB) Logf(string, ...any)       {}
func (*mainTB) Errorf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (*mainTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *mainTB) Cleanup(f func())        { t.cleanups = append(t.cleanups, f) }
func (t *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "client-example-")
	if err != nil {
		panic(err)
	}
	t.dirs = append(t.dirs, d)
	return d
}

func (t *mainTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	for _, d := range t.dirs {
		os.RemoveAll(d)
	}
}

// Alice sends Bob a message. Send only queues it: Alice's client
// publishes it once online and again until its echo arrives, and Bob's
// client finds it in his stream (live, or through sync if he connects
// later). Persist Header.US of each handled event to resume with
// Options.Since.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan *client.Message, 1)
	bob, err := client.New(client.Options{
		Addr: exampleAddr, UID: "bob", DID: "phone", Secret: "bob-password",
		OnEvent: func(e client.Event) {
			if m, ok := e.(*client.Message); ok && m.From != "bob" {
				got <- m
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	alice, err := client.New(client.Options{Addr: exampleAddr, UID: "alice", DID: "laptop", Secret: "alice-password"})
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 2)
	go func() { done <- bob.Run(ctx) }()
	go func() { done <- alice.Run(ctx) }()

	alice.Send("bob", "on my way")
	select {
	case m := <-got:
		fmt.Printf("[%s] %s: %s\n", m.CV, m.From, m.B)
	case err := <-done:
		fmt.Println(err)
	}
	cancel()
	// Output: [d:alice:bob] alice: on my way
}

// A refused RPC is an *RPCError carrying the protocol's code.
func ExampleClient_Call() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	online := make(chan struct{}, 1)
	c, err := client.New(client.Options{
		Addr: exampleAddr, UID: "alice", DID: "tablet", Secret: "alice-password",
		OnOnline: func(time.Duration) { online <- struct{}{} },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	go c.Run(ctx) //nolint:errcheck // ends with ctx
	<-online
	var convs struct {
		Convs []struct {
			CV string `json:"cv"`
		} `json:"convs"`
	}
	if err := c.Call(ctx, "conv.list", nil, &convs); err != nil {
		fmt.Println(err)
	}
	err = c.Call(ctx, "group.members", map[string]string{"gid": "nosuch"}, nil)
	var re *client.RPCError
	if errors.As(err, &re) {
		fmt.Println(re.Op, re.Code)
	}
	// Output: group.members 404
}

package broker_test

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
)

// TestReconnectRace: devices whose connection dies and who reconnect at
// once, over and over, are served by every new connection. The previous
// connection's cleanup runs while the new one attaches; in mochi's own
// takeover that cleanup could delete the new client and its subscription
// by ClientID, and the device, connected, got no replies (it was seen as
// a few unanswered hellos in every 10k reconnect storm).
func TestReconnectRace(t *testing.T) {
	t.Parallel()
	const devices, cycles = 16, 25
	b := brokertest.Start(t)
	for i := range devices {
		b.AddUser(fmt.Sprintf("u%02d", i), pw)
	}
	var wg sync.WaitGroup
	errs := make(chan error, devices*cycles)
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := fmt.Sprintf("u%02d", i)
			for n := range cycles {
				if err := connectHelloAndCut(b, uid); err != nil {
					errs <- fmt.Errorf("%s, cycle %d: %w", uid, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// connectHelloAndCut connects uid's device "d" (clean session), subscribes
// to its tree, asks hello and waits for the reply, then resets the TCP
// connection without a DISCONNECT.
func connectHelloAndCut(b *brokertest.Broker, uid string) error {
	var (
		mu sync.Mutex
		nc net.Conn
	)
	o := b.ClientOptions(uid+".d", uid, pw).SetAutoReconnect(false).SetConnectRetry(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", u.Host, brokertest.Timeout)
			mu.Lock()
			nc = c
			mu.Unlock()
			return c, err
		})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(brokertest.Timeout) || tok.Error() != nil {
		return fmt.Errorf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	replies := make(chan struct{}, 4)
	tok := c.Subscribe("im/u/"+uid+"/d/d/#", 1, func(paho.Client, paho.Message) {
		select {
		case replies <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(brokertest.Timeout) || tok.Error() != nil {
		return fmt.Errorf("subscribe: %v", tok.Error())
	}
	tok = c.Publish("im/up/"+uid+"/d/rpc", 1, false, `{"rid":"1","op":"hello","a":{}}`)
	if !tok.WaitTimeout(brokertest.Timeout) || tok.Error() != nil {
		return fmt.Errorf("hello: %v", tok.Error())
	}
	select {
	case <-replies:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no hello reply: the connection is attached but not served")
	}
	mu.Lock()
	defer mu.Unlock()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return nc.Close()
}

// TestAnonymousNoTakeover: on a listener that admits anonymous clients,
// an anonymous connection that uses an authenticated device's ClientID is
// refused instead of taking the device's session over.
func TestAnonymousNoTakeover(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.MQTT.Anonymous = true })
	b.AddUser("alice", pw)
	lost := make(chan struct{}, 1)
	alice := b.Connect(b.ClientOptions("alice.p1", "alice", pw).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} }))
	err := b.TryConnect(b.ClientOptions("alice.p1", "", ""))
	if err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Fatalf("anonymous connect with alice's ClientID: %v, want not authorized", err)
	}
	select {
	case <-lost:
		t.Fatal("alice's connection was taken over")
	case <-time.After(200 * time.Millisecond):
	}
	if !alice.IsConnectionOpen() {
		t.Fatal("alice is not connected")
	}
	// An anonymous client may take over an anonymous one.
	anon := b.Connect(b.ClientOptions("kiosk-7", "", "").SetAutoReconnect(false))
	defer brokertest.Disconnect(t, anon)
	if err := b.TryConnect(b.ClientOptions("kiosk-7", "", "")); err != nil {
		t.Fatalf("anonymous takeover of an anonymous session: %v", err)
	}
}

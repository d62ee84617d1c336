// Package brokertest starts a real Tern broker for tests: loopback
// listeners on port 0, Badger in t.TempDir(), cleanup registered, and paho
// clients dialled against it.
package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/internal/config"
)

// Timeout bounds every wait in the helpers: generous, since it only matters
// when a test fails, and -race on a busy 2-core box is slow.
const Timeout = 20 * time.Second

// Broker is a running test broker.
type Broker struct {
	*broker.Broker
	Config *config.Config
	t      testing.TB
}

// Config returns the test defaults: loopback port-0 listeners, a temp data
// dir and cheap password hashing.
func Config(t testing.TB) *config.Config {
	cfg := config.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.MQTT.Addr = "127.0.0.1:0"
	cfg.WS.Addr = "127.0.0.1:0"
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.AdminToken = "test-admin-token"
	cfg.Auth.Argon2Time = 1
	cfg.Auth.Argon2Memory = 1 << 20
	// Short enough for the bad-input tests, long enough for a loaded CI box.
	cfg.Limits.ConnectTimeout = 3 * time.Second
	// The index in the broker's process: a worker process per test broker
	// costs CI a process start each. Tests of the worker turn it on.
	cfg.Search.Process = false
	return cfg
}

// Start starts a broker with Config(t) modified by opts, and closes it at
// cleanup.
func Start(t testing.TB, opts ...func(*config.Config)) *Broker {
	t.Helper()
	cfg := Config(t)
	for _, o := range opts {
		o(cfg)
	}
	return StartConfig(t, cfg)
}

// StartConfig starts a broker with exactly cfg.
func StartConfig(t testing.TB, cfg *config.Config) *Broker {
	t.Helper()
	return StartLogged(t, cfg, Logger(t))
}

// StartLogged starts a broker with exactly cfg that logs to log (tests of
// what is logged at which level).
func StartLogged(t testing.TB, cfg *config.Config, log *slog.Logger) *Broker {
	t.Helper()
	b, err := broker.New(cfg, log)
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	tb := &Broker{Broker: b, Config: cfg, t: t}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("broker.Close: %v", err)
		}
	})
	return tb
}

// Logger logs at warn and above into the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// AddUser creates a user with a password.
func (b *Broker) AddUser(uid, password string) {
	b.t.Helper()
	if err := b.Accounts().AddUser(uid, password, false); err != nil {
		b.t.Fatalf("add user %s: %v", uid, err)
	}
}

// Token issues a device token.
func (b *Broker) Token(uid, did string) string {
	b.t.Helper()
	secret, _, err := b.Accounts().CreateToken(uid, did)
	if err != nil {
		b.t.Fatalf("token %s.%s: %v", uid, did, err)
	}
	return secret
}

// URL returns the tcp:// URL of the MQTT listener.
func (b *Broker) URL() string { return "tcp://" + b.Addr(broker.ListenerMQTT) }

// ClientOptions returns paho 3.1.1 options for the broker's MQTT
// listener with no automatic reconnect (tests decide).
func (b *Broker) ClientOptions(clientID, user, pass string) *paho.ClientOptions {
	return b.ClientOptionsAt(b.URL(), clientID, user, pass)
}

// ClientOptionsAt is ClientOptions for another listener, e.g.
// "ws://host:port/mqtt" or "ssl://host:port".
func (b *Broker) ClientOptionsAt(url, clientID, user, pass string) *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(Timeout).SetWriteTimeout(Timeout).SetOrderMatters(false)
	return o
}

// Connect dials with o and fails the test unless CONNACK accepts.
func (b *Broker) Connect(o *paho.ClientOptions) paho.Client {
	b.t.Helper()
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(Timeout) {
		b.t.Fatalf("connect %s: timed out", o.ClientID)
	}
	if err := tok.Error(); err != nil {
		b.t.Fatalf("connect %s: %v", o.ClientID, err)
	}
	b.t.Cleanup(func() { Disconnect(b.t, c) })
	return c
}

// Dial connects a 3.1.1 client as {uid}.{did} with secret.
func (b *Broker) Dial(uid, did, secret string) paho.Client {
	b.t.Helper()
	return b.Connect(b.ClientOptions(uid+"."+did, uid, secret))
}

// TryConnect dials and returns the CONNECT error (nil when accepted).
func (b *Broker) TryConnect(o *paho.ClientOptions) error {
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(Timeout) {
		return fmt.Errorf("connect %s: timed out", o.ClientID)
	}
	if tok.Error() == nil {
		Disconnect(b.t, c)
	}
	return tok.Error()
}

// Disconnect disconnects a paho client without letting the test hang:
// paho's Disconnect waits for its router, which a handler blocked on a
// full channel would hold forever. After 5 s the client is left behind,
// logged, rather than the whole test binary running into its timeout.
func Disconnect(t testing.TB, c paho.Client) {
	done := make(chan struct{})
	go func() {
		c.Disconnect(50)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r := c.OptionsReader()
		t.Logf("paho Disconnect of %s did not return in 5 s; left behind", r.ClientID())
	}
}

// Wait waits for a paho token and fails the test on timeout or error.
func Wait(t testing.TB, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(Timeout) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Subscribe subscribes and returns the granted QoS (0x80 means refused).
func Subscribe(t testing.TB, c paho.Client, filter string, qos byte, h paho.MessageHandler) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, h)
	Wait(t, tok, "subscribe "+filter)
	// paho keys results by the filter without a $share/{group}/ prefix;
	// there is exactly one entry.
	for _, code := range tok.(*paho.SubscribeToken).Result() {
		return code
	}
	t.Fatalf("subscribe %s: no result", filter)
	return 0
}

// Conn5 is an MQTT 5 client connection.
type Conn5 struct {
	*paho5.Client
	Msgs chan *paho5.Publish
}

// Dial5 connects an MQTT 5 client as {uid}.{did}; every received PUBLISH
// goes to Msgs (buffered).
func (b *Broker) Dial5(uid, did, secret string) (*Conn5, *paho5.Connack, error) {
	b.t.Helper()
	nc, err := net.DialTimeout("tcp", b.Addr(broker.ListenerMQTT), Timeout)
	if err != nil {
		return nil, nil, err
	}
	c5 := &Conn5{Msgs: make(chan *paho5.Publish, 1024)}
	c5.Client = paho5.NewClient(paho5.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){
			func(pr paho5.PublishReceived) (bool, error) {
				select {
				case c5.Msgs <- pr.Packet:
				default:
				}
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	ca, err := c5.Connect(ctx, &paho5.Connect{
		ClientID: uid + "." + did, Username: uid, Password: []byte(secret),
		UsernameFlag: true, PasswordFlag: true, KeepAlive: 30, CleanStart: true,
	})
	if err != nil {
		nc.Close()
		return nil, ca, err
	}
	b.t.Cleanup(func() {
		_ = c5.Disconnect(&paho5.Disconnect{ReasonCode: 0}) // best effort: the test is over
		nc.Close()
	})
	return c5, ca, nil
}

// HTTPURL returns the base URL of the HTTP listener.
// WebToken logs uid in with password through POST /v1/login and returns
// the device token it issues (for Authorization: Bearer on /v1/).
func (b *Broker) WebToken(t testing.TB, uid, password string) string {
	t.Helper()
	body, err := json.Marshal(map[string]string{"uid": uid, "password": password})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(b.HTTPURL()+"/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("login %s: %s %v", uid, resp.Status, err)
	}
	return tok.Token
}

func (b *Broker) HTTPURL() string {
	return (&url.URL{Scheme: "http", Host: b.Addr(broker.ListenerHTTP)}).String()
}

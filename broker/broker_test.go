package broker_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/config"
)

const pw = "correct-horse"

// refused reports whether err is a CONNACK refusal (not a transport error).
func refused(err error) bool {
	return err != nil && (errors.Is(err, packets.ErrorRefusedNotAuthorised) ||
		errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword))
}

func TestConnectAuthentication(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	tok := b.Token("alice", "p1")
	if err := b.Accounts().SetDisabled("bob", true); err != nil {
		t.Fatal(err)
	}
	bobTok := b.Token("bob", "p1")

	tests := []struct {
		name             string
		client, user, pw string
		ok               bool
		want             error
	}{
		{"password", "alice.p1", "alice", pw, true, nil},
		{"token", "alice.p1", "alice", tok, true, nil},
		{"password other device", "alice.tab", "alice", pw, true, nil},
		{"wrong password", "alice.p1", "alice", "wrong-password", false, packets.ErrorRefusedBadUsernameOrPassword},
		{"unknown user", "mallory.p1", "mallory", pw, false, packets.ErrorRefusedBadUsernameOrPassword},
		{"token of another device", "alice.p2", "alice", tok, false, packets.ErrorRefusedNotAuthorised},
		{"made-up token", "alice.p1", "alice", "tt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", false, packets.ErrorRefusedNotAuthorised},
		{"client id of another user", "bob.p1", "alice", pw, false, packets.ErrorRefusedNotAuthorised},
		{"client id without device", "alice", "alice", pw, false, packets.ErrorRefusedNotAuthorised},
		{"client id with wildcard", "alice.p+", "alice", pw, false, packets.ErrorRefusedNotAuthorised},
		{"client id with slash", "alice.p/1", "alice", pw, false, packets.ErrorRefusedNotAuthorised},
		{"disabled user", "bob.p1", "bob", pw, false, packets.ErrorRefusedNotAuthorised},
		{"disabled user token", "bob.p1", "bob", bobTok, false, packets.ErrorRefusedNotAuthorised},
		{"anonymous", "anon1", "", "", false, packets.ErrorRefusedNotAuthorised},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.TryConnect(b.ClientOptions(tt.client, tt.user, tt.pw))
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}

	// Revoking the token refuses it from then on; the password still works.
	if _, err := b.Accounts().RevokeTokens("alice", "p1", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.TryConnect(b.ClientOptions("alice.p1", "alice", tok)); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("revoked token: err = %v", err)
	}
	if err := b.TryConnect(b.ClientOptions("alice.p1", "alice", pw)); err != nil {
		t.Fatalf("password after revoke: %v", err)
	}
}

func TestFailureThrottle(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.MaxFailures = 3
		c.Auth.Lockout = time.Hour
		c.Auth.MaxLockout = time.Hour
	})
	b.AddUser("alice", pw)
	b.AddUser("carol", pw)
	for i := 0; i < 3; i++ {
		if err := b.TryConnect(b.ClientOptions("alice.p1", "alice", "guess-"+string(rune('a'+i)))); !refused(err) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// Locked out: even the right password is refused, without a KDF run.
	if err := b.TryConnect(b.ClientOptions("alice.p1", "alice", pw)); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("locked user with right password: err = %v", err)
	}
	// Other users from the same address still get in (address budget is 4x).
	if err := b.TryConnect(b.ClientOptions("carol.p1", "carol", pw)); err != nil {
		t.Fatalf("other user: %v", err)
	}
	body := httpGet(t, b.HTTPURL()+"/metrics")
	for _, want := range []string{`tern_auth_failures_total{reason="bad_credentials"} 3`, `tern_auth_failures_total{reason="throttled"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestSubscribeACL(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	c := b.Dial("alice", "p1", pw)
	tests := []struct {
		filter string
		ok     bool
	}{
		{"im/u/alice/d/p1/#", true},
		{"im/u/alice/d/p1/in", true},
		{"im/sys/server", true},
		{"im/sys/notice", true},
		{"im/p/alice", true},
		{"im/u/alice/d/p2/#", false},
		{"im/u/bob/d/p1/#", false},
		{"im/u/+/d/+/in", false},
		{"im/u/alice/d/p1/+", false},
		{"im/#", false},
		{"#", false},
		{"+/+", false},
		{"im/p/bob", false},
		{"im/p/+", false},
		{"im/k/bob", false},
		{"im/g/ops/meta", false},
		{"im/up/alice/p1/msg", false},
		{"$SYS/#", false},
		{"$share/g/im/u/alice/d/p1/#", false},
		{"$im/#", false},
		{"plain/topic", false},
	}
	for _, tt := range tests {
		got := brokertest.Subscribe(t, c, tt.filter, 1, func(paho.Client, paho.Message) {})
		if ok := got != 0x80; ok != tt.ok {
			t.Errorf("subscribe %q granted=%v (code %#x), want %v", tt.filter, ok, got, tt.ok)
		}
	}
	if !c.IsConnectionOpen() {
		t.Fatal("refused subscriptions closed the connection")
	}
}

func TestServerInfoRetained(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	c := b.Dial("alice", "p1", pw)
	got := make(chan string, 1)
	brokertest.Subscribe(t, c, "im/sys/server", 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	})
	select {
	case p := <-got:
		if !strings.Contains(p, `"epoch":`) || !strings.Contains(p, `"v":"`+broker.Version+`"`) {
			t.Fatalf("im/sys/server = %s", p)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("no retained im/sys/server")
	}
}

// TestForeignPublishNeverDelivered: a device publishing into another
// user's tree (downstream or upstream) reaches nobody.
func TestForeignPublishNeverDelivered(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	bob := b.Dial("bob", "p1", pw)
	got := make(chan string, 10)
	brokertest.Subscribe(t, bob, "im/u/bob/d/p1/#", 1, func(_ paho.Client, m paho.Message) {
		if strings.Contains(string(m.Payload()), "spoof") {
			got <- "spoof on " + m.Topic()
			return
		}
		got <- m.Topic()
	})

	// Spoofing bob's downstream: an ACL violation, the 3.1.1 client is
	// disconnected and nothing is delivered.
	alice := b.Dial("alice", "p1", pw)
	alice.Publish("im/u/bob/d/p1/in", 1, false, `{"t":"msg","b":"spoof"}`).WaitTimeout(time.Second)
	// Own upstream topic with nothing consuming it (call signalling is
	// not built yet): dropped, not routed.
	alice2 := b.Dial("alice", "p2", pw)
	brokertest.Wait(t, alice2.Publish("im/up/alice/p2/call", 1, false, `{"call":"x","op":"invite","to":"bob"}`), "publish upstream")

	// Positive control: a real message from alice reaches bob's …/in, and
	// it is the first thing bob receives. Anything the two publishes above
	// had delivered would have been routed before their acknowledgement,
	// so before this message.
	brokertest.Wait(t, alice2.Publish("im/up/alice/p2/msg", 1, false, `{"to":"bob","cmid":"c1","b":"control"}`), "publish control")
	select {
	case topic := <-got:
		if topic != "im/u/bob/d/p1/in" {
			t.Fatalf("bob first received %s", topic)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("the control message never reached bob: the subscription does not work")
	}
}

// dialRaw connects alice with a will, through a connection the test can
// cut to make the will fire.
func dialWithWill(t *testing.T, b *brokertest.Broker, willTopic string) (paho.Client, func()) {
	t.Helper()
	var mu sync.Mutex
	var conn net.Conn
	o := b.ClientOptions("alice.p1", "alice", pw).SetWill(willTopic, "gone", 1, false).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", b.Addr(broker.ListenerMQTT))
			mu.Lock()
			conn = c
			mu.Unlock()
			return c, err
		})
	c := b.Connect(o)
	return c, func() {
		mu.Lock()
		defer mu.Unlock()
		conn.Close()
	}
}

func TestWillStaysInsideACL(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.ACL.Rules = []config.Rule{{Filter: "status/#", Access: "readwrite", Users: []string{"all"}}}
	})
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	bob := b.Dial("bob", "p1", pw)
	got := make(chan string, 10)
	h := func(_ paho.Client, m paho.Message) { got <- m.Topic() }
	brokertest.Subscribe(t, bob, "im/u/bob/d/p1/#", 1, h)
	brokertest.Subscribe(t, bob, "status/#", 1, h)

	// A will on bob's tree is rewritten to $im/will/… and reaches nobody.
	_, cut := dialWithWill(t, b, "im/u/bob/d/p1/in")
	cut()
	// A will on a topic alice may publish to stands and is delivered:
	// proof that wills fire at all in this test.
	_, cut2 := dialWithWill(t, b, "status/alice")
	cut2()
	select {
	case topic := <-got:
		if topic != "status/alice" {
			t.Fatalf("bob received will on %s", topic)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("the allowed will never arrived")
	}
	select {
	case topic := <-got:
		t.Fatalf("bob received a second will on %s", topic)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestUsersSurviveRestart(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	b1, err := broker.New(cfg, brokertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b1.Accounts().AddUser("alice", pw, false); err != nil {
		t.Fatal(err)
	}
	secret, _, err := b1.Accounts().CreateToken("alice", "p1")
	if err != nil {
		t.Fatal(err)
	}
	epoch1 := b1.Epoch()
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := brokertest.StartConfig(t, cfg)
	if b2.Epoch() <= epoch1 {
		t.Errorf("epoch %d after restart, was %d", b2.Epoch(), epoch1)
	}
	b2.Dial("alice", "p1", pw)
	b2.Dial("alice", "p1", secret)
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	ctx := context.Background()
	api := adminapi.NewClient(b.HTTPURL(), b.AdminToken())
	if err := api.AddUser(ctx, "alice", pw, false); err != nil {
		t.Fatal(err)
	}
	if err := api.AddUser(ctx, "alice", pw, false); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("duplicate add: %v", err)
	}
	for _, bad := range []string{"Alice", "a/b", "a+", "all", ""} {
		if err := api.AddUser(ctx, bad, pw, false); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("add %q: %v", bad, err)
		}
	}
	if err := api.AddUser(ctx, "bob", "short", false); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("short password: %v", err)
	}
	tok, err := api.CreateToken(ctx, "alice", "p1")
	if err != nil || !strings.HasPrefix(tok.Secret, "tt_") {
		t.Fatalf("create token: %+v %v", tok, err)
	}
	if _, err := api.CreateToken(ctx, "alice", "P/1"); err == nil {
		t.Error("token for invalid device id accepted")
	}
	if _, err := api.CreateToken(ctx, "nobody", "p1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("token for unknown user: %v", err)
	}
	ts, err := api.Tokens(ctx, "alice")
	if err != nil || len(ts) != 1 || ts[0].DID != "p1" || ts[0].Secret != "" {
		t.Fatalf("tokens: %+v %v", ts, err)
	}

	// A connected device is kicked when its token is revoked.
	c := b.Dial("alice", "p1", tok.Secret)
	if n, err := api.RevokeTokens(ctx, "alice", "p1", ""); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	waitClosed(t, c)
	if err := b.TryConnect(b.ClientOptions("alice.p1", "alice", tok.Secret)); !refused(err) {
		t.Fatalf("revoked token connect: %v", err)
	}

	// Disabling kicks and refuses; enabling admits again.
	c = b.Dial("alice", "p2", pw)
	if err := api.SetDisabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	if err := b.TryConnect(b.ClientOptions("alice.p2", "alice", pw)); !refused(err) {
		t.Fatalf("disabled connect: %v", err)
	}
	if err := api.SetDisabled(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if err := api.SetPassword(ctx, "alice", "new-password-1"); err != nil {
		t.Fatal(err)
	}
	b.Dial("alice", "p2", "new-password-1")
	us, err := api.Users(ctx)
	if err != nil || len(us) != 1 || us[0].UID != "alice" {
		t.Fatalf("users: %+v %v", us, err)
	}
	if err := api.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := api.DeleteUser(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("second delete: %v", err)
	}

	// Without the token: 401.
	wrong := adminapi.NewClient(b.HTTPURL(), "nope")
	if _, err := wrong.Users(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong admin token: %v", err)
	}
}

func waitClosed(t *testing.T, c paho.Client) {
	t.Helper()
	deadline := time.Now().Add(brokertest.Timeout)
	for c.IsConnectionOpen() {
		if time.Now().After(deadline) {
			t.Fatal("connection still open")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	if got := httpGet(t, b.HTTPURL()+"/healthz"); got != "ok\n" {
		t.Errorf("healthz = %q", got)
	}
	if got := httpGet(t, b.HTTPURL()+"/readyz"); got != "ready\n" {
		t.Errorf("readyz = %q", got)
	}
	b.AddUser("alice", pw)
	b.Dial("alice", "p1", pw)
	m := httpGet(t, b.HTTPURL()+"/metrics")
	for _, want := range []string{"tern_connections 1", "tern_connects_total 1", "tern_messages_in_total", "tern_acl_denials_total", "process_resident_memory_bytes"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadInputKeepsBrokerServing sends garbage, a malformed CONNECT and an
// oversized packet; each connection is dropped, nothing crashes, and a
// well-behaved client is served throughout.
func TestBadInputKeepsBrokerServing(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.ACL.Rules = []config.Rule{{Filter: "echo/#", Access: "readwrite", Users: []string{"all"}}}
	})
	b.AddUser("alice", pw)
	good := b.Dial("alice", "p1", pw)
	echo := make(chan []byte, 4)
	brokertest.Subscribe(t, good, "echo/alice", 1, func(_ paho.Client, m paho.Message) {
		select {
		case echo <- m.Payload():
		default: // never block paho's router; the test fails on its timeout
		}
	})

	addr := b.Addr(broker.ListenerMQTT)
	for name, raw := range map[string][]byte{
		"garbage":            []byte("GET / HTTP/1.1\r\n\r\n"),
		"publish first":      {0x30, 0x05, 0x00, 0x01, 'a', 'b', 'c'},
		"bad protocol name":  {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'X', 'X', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00},
		"truncated connect":  {0x10, 0x7f, 0x00, 0x04, 'M', 'Q'},
		"huge remaining len": {0x10, 0xff, 0xff, 0xff, 0x7f},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(raw); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(brokertest.Timeout))
			// The broker answers with at most a refusing CONNACK, then closes.
			_, err = io.ReadAll(bufio.NewReader(c))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection left open after bad input")
			}
		})
	}

	// Oversized publish: over max_packet_size, the sender is dropped.
	big := b.Dial("alice", "p2", pw)
	big.Publish("echo/alice", 1, false, make([]byte, 200<<10)).WaitTimeout(2 * time.Second)
	waitClosed(t, big)

	brokertest.Wait(t, good.Publish("echo/alice", 1, false, "still here"), "publish")
	select {
	case p := <-echo:
		if string(p) != "still here" {
			t.Fatalf("echo = %q", p)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("broker stopped serving after bad input")
	}
}

func TestLogLevelAtRuntime(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	b, err := broker.New(cfg, brokertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	lv := new(slog.LevelVar)
	b.SetLogLevel(lv)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	req, _ := http.NewRequest(http.MethodPut, "http://"+b.Addr(broker.ListenerHTTP)+"/admin/v1/loglevel", strings.NewReader(`{"level":"debug"}`))
	req.Header.Set("Authorization", "Bearer "+b.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || lv.Level() != slog.LevelDebug {
		t.Fatalf("status %d, level %v", resp.StatusCode, lv.Level())
	}
}

func TestPprofNeedsAdminToken(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	url := b.HTTPURL() + "/debug/pprof/heap"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+b.AdminToken())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with token: %d", resp.StatusCode)
	}
}

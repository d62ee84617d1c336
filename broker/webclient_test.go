package broker_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/webui"
)

// TestHTTPPortServesClientAndMQTT: one origin serves the web client at /,
// MQTT over WebSocket at /mqtt, and the rest of the HTTP API beside them
// (PROTOCOL §15, §18).
func TestHTTPPortServesClientAndMQTT(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)

	res, err := http.Get(b.HTTPURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.Contains(string(page), `data-testid="login-uid"`) {
		t.Fatalf("GET /: %d, page %.80q", res.StatusCode, page)
	}
	if res.Header.Get("Content-Security-Policy") != webui.CSP {
		t.Fatalf("GET /: CSP %q", res.Header.Get("Content-Security-Policy"))
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/admin/v1/users": 401} {
		res, err := http.Get(b.HTTPURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d (the web client must not shadow it)", path, res.StatusCode, want)
		}
	}

	c := b.Connect(b.ClientOptionsAt("ws://"+b.Addr("http")+"/mqtt", "alice.web", "alice", pw))
	got := make(chan string, 1)
	brokertest.Subscribe(t, c, "im/sys/server", 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	})
	select {
	case p := <-got:
		if !strings.Contains(p, "epoch") {
			t.Fatalf("payload %q", p)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("nothing over the HTTP port's websocket")
	}
	// Credentials are checked there as on every listener.
	if err := b.TryConnect(b.ClientOptionsAt("ws://"+b.Addr("http")+"/mqtt", "alice.web2", "alice", "wrong")); err == nil {
		t.Fatal("a wrong password was accepted on /mqtt of the HTTP port")
	}
}

// TestHTTPPortMQTTGated: the connection caps count MQTT over WebSocket on
// the HTTP port too; a refused upgrade gets 503 and no WebSocket.
func TestHTTPPortMQTTGated(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.Limits.MaxConnections = 1 })
	b.AddUser("alice", pw)
	b.Connect(b.ClientOptions("alice.d1", "alice", pw))
	ws, res, err := websocket.DefaultDialer.Dial("ws://"+b.Addr("http")+"/mqtt", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
	if err == nil {
		ws.Close()
		t.Fatal("an upgrade beyond max_connections was accepted")
	}
	if res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("refused upgrade: %v, response %v", err, res)
	}
	want := `tern_connections_refused_total{reason="max_connections"} 1`
	if got := metric(t, b, `tern_connections_refused_total{reason="max_connections"}`); got != want {
		t.Fatalf("metric %q, want %q", got, want)
	}
	// The page itself is not an MQTT connection: still served.
	res, err = http.Get(b.HTTPURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET / at the cap: %d", res.StatusCode)
	}
}

package broker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
)

// closedAtAccept dials the MQTT listener and reports whether the broker
// closed the connection without reading anything (a refusal at accept):
// the read ends with EOF or a reset rather than the deadline.
func closedAtAccept(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, brokertest.Timeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(brokertest.Timeout)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// metric returns the /metrics line that starts with prefix.
func metric(t *testing.T, b *brokertest.Broker, prefix string) string {
	t.Helper()
	resp, err := http.Get(b.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestConnectionCaps: connections beyond the total and per-address caps,
// or beyond the per-address attempt rate, are closed at accept, before any
// MQTT byte is read, and counted by reason; a freed place is usable again.
// On the old code nothing was capped: the extra connection stayed open.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		set    func(*config.Config)
		reason string
	}{
		{"total", func(c *config.Config) { c.Limits.MaxConnections = 2 }, "max_connections"},
		{"per-ip", func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 2 }, "max_connections_per_ip"},
		{"rate", func(c *config.Config) {
			c.Limits.ConnectRatePerIP, c.Limits.ConnectBurstPerIP = 0.001, 2
		}, "connect_rate_per_ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := brokertest.Start(t, tc.set)
			b.AddUser("alice", "pw-alice")
			c1 := b.Connect(b.ClientOptions("alice.d1", "alice", "pw-alice"))
			b.Connect(b.ClientOptions("alice.d2", "alice", "pw-alice"))
			// Both the TCP and the WebSocket listener refuse: the caps
			// count connections over all of them.
			for _, id := range []string{broker.ListenerMQTT, broker.ListenerWS} {
				if !closedAtAccept(t, b.Addr(id)) {
					t.Fatalf("a third connection to %s was not closed at accept", id)
				}
			}
			want := `tern_connections_refused_total{reason="` + tc.reason + `"} 2`
			if got := metric(t, b, `tern_connections_refused_total{reason="`+tc.reason+`"}`); got != want {
				t.Fatalf("metric %q, want %q", got, want)
			}
			if tc.reason == "connect_rate_per_ip" {
				return // no token comes back within the test
			}
			// Free a place: a new client gets in once the broker has
			// seen the first one go.
			brokertest.Disconnect(t, c1)
			deadline := time.Now().Add(brokertest.Timeout)
			for {
				err := b.TryConnect(b.ClientOptions("alice.d3", "alice", "pw-alice"))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no place after a disconnect: %v", err)
				}
			}
		})
	}
}

// countingHandler counts log records by listener and message.
type countingHandler struct {
	slog.Handler
	mu       *sync.Mutex
	n        map[string]int
	listener string
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[h.listener+" "+r.Message]++
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	l := h.listener
	for _, a := range as {
		if a.Key == "listener" {
			l = a.Value.String()
		}
	}
	return countingHandler{h.Handler.WithAttrs(as), h.mu, h.n, l}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.mu, h.n, h.listener}
}

func (h countingHandler) count(listener, msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[listener+" "+msg]
}

const envFDChild = "TERN_FD_EXHAUSTION_CHILD"

// TestAcceptSurvivesFDExhaustion runs in a child process (it lowers
// RLIMIT_NOFILE): it uses up every file descriptor, makes a connection
// the broker cannot accept, and checks that the MQTT listener reports the
// failure (/readyz's Problems), logs it once, and accepts again once the
// descriptors are released: a new client connects and /readyz is ready.
// On the old code the accept loop returned on EMFILE: the new client
// never connected and /readyz kept saying ready.
func TestAcceptSurvivesFDExhaustion(t *testing.T) {
	if os.Getenv(envFDChild) == "" {
		t.Parallel()
		cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptSurvivesFDExhaustion$", "-test.count=1")
		cmd.Env = append(os.Environ(), envFDChild+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PASS") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	counts := countingHandler{Handler: brokertest.Logger(t).Handler(), mu: new(sync.Mutex), n: map[string]int{}}
	cfg := brokertest.Config(t)
	b, err := broker.New(cfg, slog.New(counts))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = uint64(len(ents) + 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) //nolint:errcheck // best effort at exit

	// Use up every descriptor, then free one for a dial: the broker's
	// accept of that connection has none left.
	var files []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatalf("open: %v", err)
			}
			break
		}
		files = append(files, f)
	}
	files[len(files)-1].Close()
	files = files[:len(files)-1]
	conn, err := net.Dial("tcp", b.Addr(broker.ListenerMQTT))
	if err != nil {
		t.Fatalf("dial with one descriptor free: %v", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(brokertest.Timeout)
	for !strings.Contains(strings.Join(b.Problems(), ";"), "listener mqtt: accept failing") {
		if time.Now().After(deadline) {
			t.Fatalf("the listener never reported failing accepts: %v", b.Problems())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
	}
	for _, f := range files {
		f.Close()
	}

	// A new client connects and readiness recovers.
	c, err := net.DialTimeout("tcp", b.Addr(broker.ListenerMQTT), brokertest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// MQTT 3.1.1 CONNECT of client "x" without credentials: the broker
	// answers CONNACK (refused, not authorised) only after accepting.
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'x'}
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(brokertest.Timeout)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("no CONNACK after the descriptors came back: % x %v", ack, err)
	}
	for len(b.Problems()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still not ready: %v", b.Problems())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
	}
	resp, err := http.Get("http://" + b.Addr(broker.ListenerHTTP) + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d after recovery", resp.StatusCode)
	}
	// Let both connections end before Close (mochi's Close races with a
	// connection still being set up).
	conn.Close()
	c.Close()
	for b.OpenConnections() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", b.OpenConnections())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the deadline
	}
	if n := counts.count("mqtt", "listener: accept failing, retrying with backoff"); n != 1 {
		t.Fatalf("accept failure logged %d times, want once per episode", n)
	}
	if n := counts.count("mqtt", "listener: accepting again"); n != 1 {
		t.Fatalf("recovery logged %d times, want once", n)
	}
}

package listener

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestHandler: an upgrade that arrives before mochi's Serve waits for it
// and is then handed over as the handler's listener id; after Close,
// upgrades get 503 and the handler's clients are closed once.
func TestHandler(t *testing.T) {
	t.Parallel()
	h := NewHandler("http-ws")
	if err := h.Init(slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	got := make(chan string, 1)
	dialed := make(chan error, 1)
	go func() {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			defer c.Close()
			// One binary message reaches establish's connection.
			err = c.WriteMessage(websocket.BinaryMessage, []byte("ping"))
		}
		dialed <- err
	}()
	h.Serve(func(id string, c net.Conn) error {
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		got <- id + ":" + string(b)
		return nil
	})
	select {
	case s := <-got:
		if s != "http-ws:ping" {
			t.Fatalf("establish got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upgrade was never handed to establish")
	}
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
	if p := h.Problem(); p != "" {
		t.Fatalf("Problem() = %q while serving", p)
	}

	closed := 0
	h.Close(func(id string) {
		if id == "http-ws" {
			closed++
		}
	})
	h.Close(func(string) { closed++ })
	if closed != 1 {
		t.Fatalf("clients closed %d times, want once", closed)
	}
	if p := h.Problem(); p != "stopped" {
		t.Fatalf("Problem() = %q after Close", p)
	}
	_, res, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after Close: %v, %v", err, res)
	}
}

// FuzzRemoteAddr: any RemoteAddr string gives an address for the gate,
// never a panic.
func FuzzRemoteAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000", "[::1]:80", "", "x", "1.2.3.4", "[fe80::1%eth0]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if remoteAddr(s) == nil {
			t.Fatal("nil address")
		}
		_ = addrIP(remoteAddr(s))
	})
}

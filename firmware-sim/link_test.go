package firmwaresim

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c) // ends when either side closes
			}()
		}
	}()
	return ln.Addr().String()
}

func newTestLink(t *testing.T, o LinkOptions) *Link {
	t.Helper()
	l, err := NewLink("127.0.0.1", echoServer(t), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// roundTrip writes p through the link and reads it back.
func roundTrip(t *testing.T, c net.Conn, p []byte) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, p) {
		t.Fatal("link changed the bytes")
	}
	return time.Since(start)
}

func TestLinkLatencyAndBandwidth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    LinkOptions
		size    int
		atLeast time.Duration
	}{
		{"plain", LinkOptions{}, 1000, 0},
		// 2 × 40 ms one way: there and back.
		{"latency", LinkOptions{Latency: 40 * time.Millisecond, Jitter: 5 * time.Millisecond}, 100, 80 * time.Millisecond},
		// 20 kB at 100 kB/s, both ways: ≥ 0.2 s each way, pipelined.
		{"bandwidth", LinkOptions{Bandwidth: 100_000}, 20_000, 200 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newTestLink(t, tc.opts)
			c, err := net.Dial("tcp", l.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if d := roundTrip(t, c, bytes.Repeat([]byte("z"), tc.size)); d < tc.atLeast {
				t.Errorf("round trip %v, want at least %v", d, tc.atLeast)
			}
		})
	}
}

func TestLinkCutAndOutage(t *testing.T) {
	t.Parallel()
	l := newTestLink(t, LinkOptions{Outage: 300 * time.Millisecond})
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, []byte("hello"))
	l.Cut()
	if l.Drops() != 1 {
		t.Fatalf("drops %d, want 1", l.Drops())
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after cut succeeded")
	}
	// During the outage a new connection is accepted and closed at once.
	c2, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("link accepted traffic during the outage")
	}
	c2.Close()
	time.Sleep(350 * time.Millisecond) // the outage is wall-clock time by design
	c3, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	roundTrip(t, c3, []byte("back"))
}

func TestLinkDropChance(t *testing.T) {
	t.Parallel()
	l := newTestLink(t, LinkOptions{Drop: 1})
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, []byte("x"))
	// With a chance of 1 per second the link drops within ~2 s.
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("link never dropped")
	}
	if l.Drops() == 0 {
		t.Fatal("drop not counted")
	}
}

func TestParseSourceIPs(t *testing.T) {
	t.Parallel()
	got, err := ParseSourceIPs("127.0.0.2-127.0.0.4,127.0.1.9")
	if err != nil || len(got) != 4 || got[0] != "127.0.0.2" || got[3] != "127.0.1.9" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"10.0.0.1", "127.0.0.5-127.0.0.2", "127.0.0.1-127.0.1.3", "x"} {
		if _, err := ParseSourceIPs(bad); err == nil {
			t.Errorf("ParseSourceIPs(%q) accepted", bad)
		}
	}
}

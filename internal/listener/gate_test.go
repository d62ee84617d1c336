package listener

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

// TestGateCaps: the total and per-address caps refuse with their reason
// and a release frees the place exactly once.
func TestGateCaps(t *testing.T) {
	t.Parallel()
	g := NewGate(Limits{MaxConns: 3, MaxPerIP: 2})
	r1, why := g.admit(tcpAddr("10.0.0.1:1000"))
	if why != "" {
		t.Fatal(why)
	}
	if _, why := g.admit(tcpAddr("10.0.0.1:1001")); why != "" {
		t.Fatal(why)
	}
	if _, why := g.admit(tcpAddr("10.0.0.1:1002")); why != RefusedPerIP {
		t.Fatalf("third from one address: %q, want %q", why, RefusedPerIP)
	}
	if _, why := g.admit(tcpAddr("[::ffff:10.0.0.2]:1000")); why != "" {
		t.Fatal(why)
	}
	if _, why := g.admit(tcpAddr("10.0.0.3:1000")); why != RefusedTotal {
		t.Fatalf("fourth in all: %q, want %q", why, RefusedTotal)
	}
	r1()
	r1() // a second release changes nothing
	if g.Open() != 2 {
		t.Fatalf("open %d after one release, want 2", g.Open())
	}
	if _, why := g.admit(tcpAddr("10.0.0.3:1000")); why != "" {
		t.Fatalf("after a release: %q", why)
	}
}

// TestGateRateTableBounded: a flood of distinct addresses keeps at most two
// generations of buckets, and an address seen again keeps its bucket.
func TestGateRateTableBounded(t *testing.T) {
	t.Parallel()
	g := NewGate(Limits{RatePerIP: 0.001, BurstPerIP: 1, MaxTracked: 100})
	if _, why := g.admit(tcpAddr("192.0.2.1:1")); why != "" {
		t.Fatal(why)
	}
	if _, why := g.admit(tcpAddr("192.0.2.1:2")); why != RefusedRate {
		t.Fatalf("second attempt: %q, want %q", why, RefusedRate)
	}
	for i := range 10000 {
		g.admit(tcpAddr(fmt.Sprintf("10.%d.%d.1:1", i/256, i%256)))
		if n := g.tracked(); n > 200 {
			t.Fatalf("%d buckets after %d addresses, want at most 200", n, i+1)
		}
	}
}

// TestTemporary: which accept errors are retried.
func TestTemporary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{&net.OpError{Op: "accept", Err: net.ErrClosed}, false},
		{fmt.Errorf("other"), false},
	} {
		if got := temporary(tc.err); got != tc.want {
			t.Errorf("temporary(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

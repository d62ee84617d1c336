package listener

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// Reasons a connection is refused before any MQTT work, as reported to
// Gate.Refused (and as the metric's reason label).
const (
	RefusedTotal = "max_connections"
	RefusedPerIP = "max_connections_per_ip"
	RefusedRate  = "connect_rate_per_ip"
)

// Backoff bounds for temporary accept errors (the values of
// net/http.Server.Serve).
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Limits bound the connections accepted through one Gate. A zero field
// means no limit.
type Limits struct {
	// MaxConns caps open connections across every listener of the gate.
	MaxConns int
	// MaxPerIP caps open connections per source address.
	MaxPerIP int
	// RatePerIP and BurstPerIP size a token bucket of connection
	// attempts per source address. RatePerIP 0 means no rate limit.
	RatePerIP  float64
	BurstPerIP int
	// MaxTracked bounds the per-address rate table; 0 means 65,536.
	MaxTracked int
}

// Gate admits or refuses new connections by Limits, shared by all the
// listeners of a broker. Refused connections are closed at once, before
// TLS, WebSocket or MQTT see them.
type Gate struct {
	lim Limits
	// Refused, if set, is called with the reason of each refusal.
	Refused func(reason string)

	total atomic.Int64
	mu    sync.Mutex
	perIP map[netip.Addr]int
	// Rate buckets in two generations: when cur is full, it becomes old
	// and a new cur starts; a bucket found in old moves to cur. Memory is
	// bounded by 2×MaxTracked buckets, and an address evicted with its
	// bucket only regains its burst.
	cur, old map[netip.Addr]*rate.Limiter
}

// NewGate returns a gate enforcing lim.
func NewGate(lim Limits) *Gate {
	if lim.MaxTracked <= 0 {
		lim.MaxTracked = 1 << 16
	}
	if lim.BurstPerIP < 1 {
		lim.BurstPerIP = 1
	}
	return &Gate{lim: lim, perIP: map[netip.Addr]int{}, cur: map[netip.Addr]*rate.Limiter{}}
}

// admit decides on a connection from addr. It returns a release function
// to call once when the connection closes, or the reason of a refusal.
func (g *Gate) admit(addr net.Addr) (release func(), reason string) {
	if g == nil {
		return func() {}, ""
	}
	ip := addrIP(addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lim.RatePerIP > 0 && !g.bucket(ip).Allow() {
		return nil, RefusedRate
	}
	if g.lim.MaxConns > 0 && g.total.Load() >= int64(g.lim.MaxConns) {
		return nil, RefusedTotal
	}
	if g.lim.MaxPerIP > 0 && g.perIP[ip] >= g.lim.MaxPerIP {
		return nil, RefusedPerIP
	}
	g.total.Add(1)
	g.perIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.total.Add(-1)
			if n := g.perIP[ip] - 1; n > 0 {
				g.perIP[ip] = n
			} else {
				delete(g.perIP, ip)
			}
		})
	}, ""
}

// bucket returns ip's token bucket; g.mu is held.
func (g *Gate) bucket(ip netip.Addr) *rate.Limiter {
	if l, ok := g.cur[ip]; ok {
		return l
	}
	l, ok := g.old[ip]
	if ok {
		delete(g.old, ip)
	} else {
		l = rate.NewLimiter(rate.Limit(g.lim.RatePerIP), g.lim.BurstPerIP)
	}
	if len(g.cur) >= g.lim.MaxTracked {
		g.old, g.cur = g.cur, make(map[netip.Addr]*rate.Limiter, len(g.cur))
	}
	g.cur[ip] = l
	return l
}

// Open returns the number of connections the gate has admitted and not
// yet released.
func (g *Gate) Open() int { return int(g.total.Load()) }

// tracked returns the number of rate buckets held (for tests).
func (g *Gate) tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.cur) + len(g.old)
}

func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{} // all unknown addresses share one entry
	}
	return ap.Addr().Unmap()
}

// gated is a net.Listener that survives temporary accept errors (file
// descriptor exhaustion above all) by backing off and retrying, and that
// refuses connections the Gate does not admit.
type gated struct {
	net.Listener
	id   string
	gate *Gate
	log  *slog.Logger
	// stopped is set when the listener has ended for good.
	stopped atomic.Bool
	// lastFail is when accept last failed (unix ns), 0 when it has
	// succeeded since; failing is that error. Linux's accept takes a
	// descriptor before it looks for a pending connection, so an idle
	// listener fails too while descriptors are exhausted, and after they
	// return it just waits: no success tells it so. It is therefore
	// failing while the last failure is within two maximum backoffs.
	lastFail  atomic.Int64
	failing   atomic.Pointer[string]
	done      chan struct{}
	closeOnce sync.Once
}

func newGated(ln net.Listener, id string, gate *Gate, log *slog.Logger) *gated {
	return &gated{Listener: ln, id: id, gate: gate, log: log, done: make(chan struct{})}
}

// Accept returns the next admitted connection. Temporary errors are
// retried with a backoff from 5 ms doubling to 1 s; the first one of an
// episode is logged, and so is the first success after it, with the
// number of failures in between.
func (g *gated) Accept() (net.Conn, error) {
	var (
		delay    time.Duration
		failures int
		since    time.Time
	)
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			if !temporary(err) {
				g.stopped.Store(true)
				return nil, err
			}
			now := time.Now()
			if failures == 0 {
				since = now
				msg := err.Error()
				g.failing.Store(&msg)
			}
			g.lastFail.Store(now.UnixNano())
			if failures == 0 {
				g.log.Warn("listener: accept failing, retrying with backoff", "error", err)
			}
			failures++
			delay = min(max(2*delay, minBackoff), maxBackoff)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-g.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		if failures > 0 {
			g.lastFail.Store(0)
			g.log.Info("listener: accepting again", "failures", failures,
				"for", time.Since(since).Round(time.Millisecond))
			failures, delay = 0, 0
		}
		release, reason := g.gate.admit(c.RemoteAddr())
		if reason != "" {
			// Counted before the close, so whoever sees the close sees
			// the count.
			if g.gate.Refused != nil {
				g.gate.Refused(reason)
			}
			g.log.Debug("connection refused", "remote", c.RemoteAddr().String(), "reason", reason)
			_ = c.Close() // refused: nothing was read, nothing to report
			continue
		}
		return &gatedConn{Conn: c, release: release}, nil
	}
}

// Close closes the listener and ends a backoff in progress.
func (g *gated) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	return g.Listener.Close()
}

// problem returns why the listener is not accepting, or "".
func (g *gated) problem() string {
	if g.stopped.Load() {
		return "stopped"
	}
	if t := g.lastFail.Load(); t != 0 && time.Since(time.Unix(0, t)) < 2*maxBackoff {
		if p := g.failing.Load(); p != nil {
			return "accept failing: " + *p
		}
		return "accept failing"
	}
	return ""
}

// temporary reports whether an accept error is worth retrying: file
// descriptor or buffer exhaustion, an aborted handshake, a timeout, or a
// net.Error that says it is temporary (as net/http.Server.Serve decides).
func temporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EAGAIN, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne interface{ Temporary() bool }
	if errors.As(err, &ne) && ne.Temporary() {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// gatedConn releases its place in the gate when closed.
type gatedConn struct {
	net.Conn
	release func()
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

package firmwaresim

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LinkOptions shape a device's simulated network link.
type LinkOptions struct {
	// Drop is the chance per second that an established link drops.
	Drop float64
	// Outage is how long the link stays down after a drop: connections
	// are refused until it is over. 0 means the device may redial at once.
	Outage time.Duration
	// Latency is added one way to every chunk in each direction; Jitter
	// adds a uniform random 0..Jitter on top (order is kept).
	Latency, Jitter time.Duration
	// Bandwidth caps each direction in bytes per second. 0 means no cap.
	Bandwidth int
}

// Active reports whether the link does anything a direct dial would not.
func (o LinkOptions) Active() bool {
	return o.Drop > 0 || o.Outage > 0 || o.Latency > 0 || o.Jitter > 0 || o.Bandwidth > 0
}

// Link is an in-process TCP proxy for one device: the device dials
// Addr(), the link dials the broker and copies bytes both ways through
// the impairments of its options. Cut severs the current connection.
type Link struct {
	opts     LinkOptions
	upstream string
	local    *net.TCPAddr // source address towards the broker, may be nil
	ln       net.Listener

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	downTill time.Time

	drops atomic.Uint64
	wg    sync.WaitGroup
	stop  chan struct{}
}

// NewLink listens on bindIP:0 and proxies to upstream. local, if not
// nil, is the source address of the dial to upstream.
func NewLink(bindIP, upstream string, local *net.TCPAddr, opts LinkOptions) (*Link, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(bindIP, "0"))
	if err != nil {
		return nil, err
	}
	l := &Link{opts: opts, upstream: upstream, local: local, ln: ln,
		conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	l.wg.Add(1)
	go l.accept()
	if opts.Drop > 0 {
		l.wg.Add(1)
		go l.chaos()
	}
	return l, nil
}

// Addr is the address the device dials.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Drops is how many times the link was cut.
func (l *Link) Drops() uint64 { return l.drops.Load() }

// SetDrop changes the drop chance (0 stops the chaos, e.g. to drain).
func (l *Link) SetDrop(p float64) {
	l.mu.Lock()
	l.opts.Drop = p
	l.mu.Unlock()
}

// Cut closes every live connection of the link and starts an outage of
// the configured length.
func (l *Link) Cut() {
	l.mu.Lock()
	cs := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.downTill = time.Now().Add(l.opts.Outage)
	l.mu.Unlock()
	if len(cs) > 0 {
		l.drops.Add(1)
	}
	for _, c := range cs {
		c.Close()
	}
}

// Close stops the listener and every connection, and waits.
func (l *Link) Close() error {
	close(l.stop)
	err := l.ln.Close()
	l.Cut()
	l.wg.Wait()
	return err
}

func (l *Link) chaos() {
	defer l.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	// Each link starts at a random phase so drops do not line up.
	select {
	case <-time.After(rand.N(time.Second)):
	case <-l.stop:
		return
	}
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		p, live := l.opts.Drop, len(l.conns) > 0
		l.mu.Unlock()
		if live && rand.Float64() < p {
			l.Cut()
		}
	}
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		down := time.Now().Before(l.downTill)
		l.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		l.wg.Add(1)
		go l.serve(c)
	}
}

func (l *Link) serve(c net.Conn) {
	defer l.wg.Done()
	d := net.Dialer{Timeout: 10 * time.Second}
	if l.local != nil {
		d.LocalAddr = l.local
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-l.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	up, err := d.DialContext(ctx, "tcp", l.upstream)
	cancel()
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.conns[up] = struct{}{}
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(up, c) }()
	go func() { defer wg.Done(); l.pipe(c, up) }()
	wg.Wait()
	l.mu.Lock()
	delete(l.conns, c)
	delete(l.conns, up)
	l.mu.Unlock()
}

// pipe copies src to dst through the impairments; when either side ends
// it closes both, as a real link failure would.
func (l *Link) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	if l.opts.Latency == 0 && l.opts.Jitter == 0 && l.opts.Bandwidth == 0 {
		// Either side ending (or failing) ends the link: nothing to report.
		io.Copy(dst, src) //nolint:errcheck
		return
	}
	type chunk struct {
		b   []byte
		due time.Time
	}
	q := make(chan chunk, 256)
	go func() {
		defer close(q)
		var last time.Time
		for {
			buf := make([]byte, 16<<10)
			n, err := src.Read(buf)
			if n > 0 {
				due := time.Now().Add(l.opts.Latency)
				if l.opts.Jitter > 0 {
					due = due.Add(rand.N(l.opts.Jitter))
				}
				if due.Before(last) {
					due = last // keep the byte order
				}
				last = due
				q <- chunk{buf[:n], due}
			}
			if err != nil {
				return
			}
		}
	}()
	var sent time.Time // when the bandwidth budget is next free
	for ch := range q {
		if w := time.Until(ch.due); w > 0 {
			time.Sleep(w)
		}
		if bw := l.opts.Bandwidth; bw > 0 {
			now := time.Now()
			if sent.Before(now) {
				sent = now
			}
			sent = sent.Add(time.Duration(len(ch.b)) * time.Second / time.Duration(bw))
			if w := time.Until(sent); w > 0 {
				time.Sleep(w)
			}
		}
		if _, err := dst.Write(ch.b); err != nil {
			src.Close()
			for range q { // let the reader finish
			}
			return
		}
	}
}

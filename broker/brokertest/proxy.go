package brokertest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/tern-im/tern/broker"
)

// Proxy is a TCP relay on 127.0.0.1 between test clients and the broker,
// whose connections a test can cut or freeze to play a lost network.
type Proxy struct {
	ln     net.Listener
	target string
	t      interface{ Logf(string, ...any) }

	mu     sync.Mutex
	relays map[*relay]struct{}
	wg     sync.WaitGroup
}

type relay struct {
	client, server net.Conn
	frozen         atomic.Bool
	once           sync.Once
}

func (r *relay) close() {
	r.once.Do(func() {
		r.client.Close()
		r.server.Close()
	})
}

// Proxy starts a relay to the broker's MQTT listener, closed at cleanup.
func (b *Broker) Proxy() *Proxy {
	b.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: b.Addr(broker.ListenerMQTT), t: b.t, relays: map[*relay]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	b.t.Cleanup(p.Close)
	return p
}

// URL returns the tcp:// URL clients dial to go through the proxy.
func (p *Proxy) URL() string { return "tcp://" + p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.t.Logf("proxy accept: %v", err)
			}
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.t.Logf("proxy dial: %v", err)
			c.Close()
			continue
		}
		r := &relay{client: c, server: s}
		p.mu.Lock()
		p.relays[r] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(r, s, c)
		go p.pipe(r, c, s)
	}
}

// pipe copies src to dst until either fails; then it closes both ends,
// unless the relay is frozen: a frozen relay leaves the other side open.
func (p *Proxy) pipe(r *relay, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			if !r.frozen.Load() {
				r.close()
			}
			return
		}
	}
}

func (p *Proxy) each(fn func(r *relay)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for r := range p.relays {
		fn(r)
	}
}

// Cut closes every relayed connection at both ends, as a reset would: the
// broker sees its TCP connection end at once.
func (p *Proxy) Cut() { p.each(func(r *relay) { r.close() }) }

// Freeze stops relaying in both directions and keeps the sockets open, so
// the broker's end is half-open: only its keepalive (or a takeover) ends
// it. The client's end may be closed; that is not passed on either.
func (p *Proxy) Freeze() { p.each(func(r *relay) { r.frozen.Store(true) }) }

// Close stops accepting and closes every relayed connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

package firmwaresim

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/client"
)

// RawOptions configure a plain MQTT client of the raw mode: no IM
// protocol, so the same load runs against any broker.
type RawOptions struct {
	Index    int
	ClientID string
	Username string
	Password string
	Dial     func() (net.Conn, error)
	QoS      byte
	Window   int
	// Subs are subscribed on every connection.
	Subs []string
	Acc  *Accounting
}

// RawClient is one plain MQTT client.
type RawClient struct {
	opts     RawOptions
	mu       sync.Mutex
	cur      *conn
	inflight int
	online   atomic.Bool
	onlineAt atomic.Int64
	nextN    atomic.Uint64
	freed    chan struct{}
	lastErr  atomic.Pointer[error]
}

// Err returns the last error of a connection attempt, if any.
func (r *RawClient) Err() error {
	if p := r.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// NewRawClient returns an unconnected raw client.
func NewRawClient(o RawOptions) *RawClient {
	if o.Window <= 0 {
		o.Window = 32
	}
	return &RawClient{opts: o, freed: make(chan struct{}, 1)}
}

// Online reports whether the client is connected and subscribed.
func (r *RawClient) Online() bool { return r.online.Load() }

// OnlineSince returns when the client last became online.
func (r *RawClient) OnlineSince() time.Time {
	if ns := r.onlineAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Run keeps the client connected until ctx is done.
func (r *RawClient) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	first := true
	for ctx.Err() == nil {
		if !client.Sleep(ctx, backoff) {
			return ctx.Err()
		}
		c, err := r.connect()
		if err != nil {
			r.lastErr.Store(&err)
			backoff = client.DefaultBackoff.Grow(backoff)
			continue
		}
		if !first {
			r.opts.Acc.Add(func(c *Counters) { c.Reconnects++ })
		}
		first = false
		backoff = client.DefaultBackoff.Min
		select {
		case <-ctx.Done():
		case <-c.done:
		}
		r.online.Store(false)
		r.mu.Lock()
		r.cur = nil
		r.mu.Unlock()
		c.c.Disconnect(0)
		c.lost()
	}
	return ctx.Err()
}

func (r *RawClient) connect() (*conn, error) {
	c := &conn{done: make(chan struct{})}
	o := paho.NewClientOptions().AddBroker("tcp://sim").SetClientID(r.opts.ClientID).
		SetUsername(r.opts.Username).SetPassword(r.opts.Password).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetKeepAlive(60 * time.Second).SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).SetOrderMatters(true).
		SetConnectionLostHandler(func(paho.Client, error) { c.lost() }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { r.onMessage(m) }).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) { return r.opts.Dial() })
	c.c = paho.NewClient(o)
	if err := wait(c.c.Connect(), nil, 15*time.Second); err != nil {
		return nil, err
	}
	for _, f := range r.opts.Subs {
		if err := wait(c.c.Subscribe(f, r.opts.QoS, nil), c, 15*time.Second); err != nil {
			c.c.Disconnect(0)
			return nil, err
		}
	}
	r.mu.Lock()
	r.cur = c
	r.inflight = 0
	r.mu.Unlock()
	r.onlineAt.Store(time.Now().UnixNano())
	r.online.Store(true)
	return c, nil
}

func (r *RawClient) onMessage(m paho.Message) {
	st, err := ParseRawPayload(m.Payload())
	if err != nil || st.Sender == r.opts.Index {
		return // not ours, or our own fan-out echo
	}
	r.opts.Acc.Applied(r.opts.Index, Delivery{Sender: st.Sender, N: st.N, CV: m.Topic(), SentAt: st.SentAt, At: time.Now()})
}

// Publish sends one stamped message to topic for recipients if the
// client is online and its window has room; it reports whether it sent.
func (r *RawClient) Publish(topic string, recipients []int, size int) bool {
	r.mu.Lock()
	c := r.cur
	if c == nil || r.inflight >= r.opts.Window {
		r.mu.Unlock()
		return false
	}
	r.inflight++
	r.mu.Unlock()
	n := r.nextN.Add(1)
	st := Stamp{Sender: r.opts.Index, N: n, SentAt: time.Now()}
	r.opts.Acc.Sent(r.opts.Index, n, recipients)
	tok := c.c.Publish(topic, r.opts.QoS, false, st.RawPayload(size))
	r.opts.Acc.Add(func(c *Counters) { c.Published++ })
	releaseWhenDone(tok, c.done, func() {
		r.mu.Lock()
		if r.cur == c {
			r.inflight--
		}
		r.mu.Unlock()
		notify(r.freed)
	})
	return true
}

// Freed is signalled when a publish of the client completes.
func (r *RawClient) Freed() <-chan struct{} { return r.freed }

// conn is one MQTT connection of a raw client.
type conn struct {
	c    paho.Client
	done chan struct{}
	once sync.Once
}

func (c *conn) lost() { c.once.Do(func() { close(c.done) }) }

// errLinkLost is a connection that went away while waiting.
var errLinkLost = errors.New("firmwaresim: connection lost")

// wait waits for a paho token, the connection's end or the timeout.
func wait(t paho.Token, c *conn, timeout time.Duration) error {
	var done <-chan struct{}
	if c != nil {
		done = c.done
	}
	select {
	case <-t.Done():
		return t.Error()
	case <-done:
		return errLinkLost
	case <-time.After(timeout):
		return ErrRPCTimeout
	}
}

// releaseWhenDone runs release once the publish tok completes or the
// connection it went out on ends (its acknowledgement will never come),
// freeing the sender's in-flight slot.
func releaseWhenDone(tok paho.Token, connDone <-chan struct{}, release func()) {
	go func() {
		select {
		case <-tok.Done():
		case <-connDone:
		}
		release()
	}()
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

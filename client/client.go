package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// Errors of the package.
var (
	// ErrNoMessaging means the broker accepted the first connection but
	// did not answer hello: it has no messaging layer (or is not Tern).
	ErrNoMessaging = errors.New("client: broker does not answer hello (no messaging layer)")
	// ErrTimeout is an RPC (or a subscribe) that got no answer in time.
	ErrTimeout = errors.New("client: timed out")
	// ErrOffline is a call made while the device is not connected.
	ErrOffline = errors.New("client: not connected")
	// ErrRefused is a CONNACK that refused the credentials before the
	// device was ever online: retrying would not help.
	ErrRefused = errors.New("client: connection refused")
	// errLinkLost is a connection that went away while waiting.
	errLinkLost = errors.New("client: connection lost")
)

// Options configure a Client. UID, DID and Secret are required, and Addr
// or Dial.
type Options struct {
	// Addr is host:port of the broker's MQTT listener (plain TCP).
	Addr string
	// Dial, if set, opens the transport instead (TLS, a proxy, a test
	// link). Whatever it returns is read through a buffer.
	Dial func() (net.Conn, error)
	// UID and DID name the device; the ClientID is {uid}.{did}.
	UID, DID string
	// Secret is the account password or a device token for (UID, DID).
	Secret string
	// CBOR asks for CBOR on the device's own topics (hello's enc).
	CBOR bool
	// QoS0 sends messages and subscribes at QoS 0 instead of 1 (not
	// advised: a message dropped on the way waits for the resend timer).
	QoS0 bool
	// PersistentSession keeps the MQTT session across connections; by
	// default every connection is clean and catch-up comes from sync.
	PersistentSession bool
	// KeepAlive is the MQTT keepalive; 0 means 30 s.
	KeepAlive time.Duration
	// MaxPkt is the largest packet the device accepts (hello); 0 means
	// 128 KiB.
	MaxPkt int
	// Typing asks for typing events (hello's feat.typing).
	Typing bool
	// Since is the last stream position the device applied: sync resumes
	// after it. 0 is a device that has applied nothing.
	Since uint64
	// StartAtHead makes a device with Since 0 start at the stream head of
	// its first hello instead of replaying the user's whole stream (a
	// Reset event reports the jump).
	StartAtHead bool
	// Window bounds unacknowledged QoS 1 publishes of the outbox; 0 means
	// 32 (below the broker's receive maximum).
	Window int
	// UploadWindow is the bytes of file chunks in flight during an Upload
	// (what a drop makes the device send again); 0 means 8 KiB.
	UploadWindow int
	// RPCTimeout bounds every RPC and subscribe; 0 means 5 s.
	RPCTimeout time.Duration
	// ResendAfter republishes an outbox message whose echo has not
	// arrived this long after its last PUBLISH; 0 means 5 s.
	ResendAfter time.Duration
	// SyncMax and SyncMaxBytes bound one sync page; 0 means 500 events
	// and 256 KiB.
	SyncMax, SyncMaxBytes int
	// Backoff is the reconnect policy; zero means DefaultBackoff.
	Backoff Backoff
	// Subscribe lists extra filters subscribed on every connection after
	// the own one (e.g. contacts' im/p/{uid}); refusals are ignored.
	Subscribe []string
	// OnEvent receives every event, on the client's goroutine, in order.
	OnEvent func(Event)
	// OnOnline is called each time the device is online again (connected,
	// hello answered, synced); catchUp is the time that took.
	OnOnline func(catchUp time.Duration)
	// OnOffline is called when an online connection ends.
	OnOffline func(err error)
	// OnRetained, if set, gets each message on a topic outside the
	// device's own tree (retained presence, group meta, sys) as received,
	// on paho's goroutine: it must not block. Presence payloads also reach
	// OnEvent as *Presence.
	OnRetained func(topic string, payload []byte)
}

// Stats are a client's counters since New.
type Stats struct {
	Published   uint64 // PUBLISHes of outbox messages, resends included
	Resent      uint64 // of those, resends of an unconfirmed message
	Rejected    uint64 // err events received (429/503 included)
	Reconnects  uint64 // connections that ended after being established
	Redelivered uint64 // stream events dropped because their us was applied
	Gaps        uint64 // live events that skipped ahead and triggered a sync
	Holes       uint64 // holes in the stream itself (reported as Reset)
}

// outMsg is a command in the outbox until the device sees its own echo.
type outMsg struct {
	cmid      string
	payload   []byte
	published bool      // on the current connection
	sends     int       // PUBLISHes so far, over all connections
	sentAt    time.Time // last PUBLISH
	notBefore time.Time // retry delay after a 429/503
}

// Client is one Tern device. Create it with New and run it with Run.
type Client struct {
	opts   Options
	qos    byte
	prefix string // cmid prefix, unique per Client

	mu       sync.Mutex
	outbox   []*outMsg
	byCMID   map[string]*outMsg
	inflight int
	queued   [][]byte // payloads of …/in, …/eph and err events, in arrival order
	kinds    []byte   // 'i' in, 'e' eph, 'r' err event, 'p' presence, per queued
	topicsQ  []string // the presence topic for 'p'
	pending  map[string]chan *reply
	cur      *conn
	lastUS   uint64
	drained  chan struct{} // closed and replaced when the outbox empties
	// downloads routes file chunks (…/f/{fid}/{i}) to Download, by fid.
	downloads map[string]*download

	evNotify   chan struct{}
	sendNotify chan struct{}
	syncReq    chan chan error
	onlineAt   atomic.Int64
	nextN      atomic.Uint64
	rid        atomic.Uint64
	online     atomic.Bool
	everOnline atomic.Bool
	lastErr    atomic.Pointer[error]

	stats struct {
		published, resent, rejected, reconnects, redelivered, gaps, holes atomic.Uint64
	}
}

// conn is one MQTT connection.
type conn struct {
	c    paho.Client
	done chan struct{}
	once sync.Once
}

func (c *conn) lost() { c.once.Do(func() { close(c.done) }) }

// New checks o and returns an unconnected client.
func New(o Options) (*Client, error) {
	if err := topics.CheckUID(o.UID); err != nil {
		return nil, fmt.Errorf("client: uid: %w", err)
	}
	if err := topics.CheckDID(o.DID); err != nil {
		return nil, fmt.Errorf("client: did: %w", err)
	}
	if o.Addr == "" && o.Dial == nil {
		return nil, errors.New("client: need Addr or Dial")
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 30 * time.Second
	}
	if o.MaxPkt <= 0 {
		o.MaxPkt = 128 << 10
	}
	if o.Window <= 0 {
		o.Window = 32
	}
	if o.RPCTimeout <= 0 {
		o.RPCTimeout = 5 * time.Second
	}
	if o.ResendAfter <= 0 {
		o.ResendAfter = 5 * time.Second
	}
	if o.SyncMax <= 0 {
		o.SyncMax = 500
	}
	if o.SyncMaxBytes <= 0 {
		o.SyncMaxBytes = 256 << 10
	}
	if o.Backoff == (Backoff{}) {
		o.Backoff = DefaultBackoff
	}
	var rb [4]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	qos := byte(1)
	if o.QoS0 {
		qos = 0
	}
	return &Client{
		opts:       o,
		qos:        qos,
		prefix:     hex.EncodeToString(rb[:]) + "-",
		byCMID:     map[string]*outMsg{},
		pending:    map[string]chan *reply{},
		lastUS:     o.Since,
		drained:    make(chan struct{}),
		evNotify:   make(chan struct{}, 1),
		sendNotify: make(chan struct{}, 1),
		syncReq:    make(chan chan error, 1),
	}, nil
}

// Online reports whether the device is connected and synced.
func (c *Client) Online() bool { return c.online.Load() }

// OnlineSince returns when the device last became online (zero if never).
func (c *Client) OnlineSince() time.Time {
	if ns := c.onlineAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Err returns the last error that ended a connection attempt, if any.
func (c *Client) Err() error {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Cursor returns the last stream position applied.
func (c *Client) Cursor() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastUS
}

// Outbox returns the number of commands not yet confirmed by their echo.
func (c *Client) Outbox() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outbox)
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Published: s.published.Load(), Resent: s.resent.Load(), Rejected: s.rejected.Load(),
		Reconnects: s.reconnects.Load(), Redelivered: s.redelivered.Load(), Gaps: s.gaps.Load(),
		Holes: s.holes.Load(),
	}
}

// Flush waits until the outbox is empty (every command confirmed or
// refused) or ctx ends.
func (c *Client) Flush(ctx context.Context) error {
	for {
		c.mu.Lock()
		n, ch := len(c.outbox), c.drained
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SyncNow asks the online device to sync now; the channel gets the
// result, or ErrOffline if the device is not online or loses its
// connection first.
func (c *Client) SyncNow() <-chan error {
	res := make(chan error, 1)
	if !c.online.Load() {
		res <- ErrOffline
		return res
	}
	select {
	case c.syncReq <- res:
	default:
		res <- ErrOffline // one is already queued
	}
	return res
}

func (c *Client) current() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Subscribe adds a subscription on the current connection; for filters
// that become allowed later, such as a new contact's presence. Add it to
// Options.Subscribe to keep it across reconnects.
func (c *Client) Subscribe(filter string) error {
	cn := c.current()
	if cn == nil {
		return ErrOffline
	}
	return c.wait(cn.c.Subscribe(filter, 1, nil), cn)
}

func (c *Client) up(kind string) string { return topics.Up(c.opts.UID, c.opts.DID, kind) }

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run keeps the device connected until ctx is done: connect, subscribe,
// hello, sync, publish the outbox, then apply events and send; on a lost
// connection it reconnects after a jittered backoff. It returns
// ErrNoMessaging if hello is not answered on the first connection,
// ErrRefused if the broker refuses the credentials before the device was
// ever online, or ctx's error.
func (c *Client) Run(ctx context.Context) error {
	bo := c.opts.Backoff
	wait := time.Duration(0)
	first := true
	for ctx.Err() == nil {
		if !Sleep(ctx, wait) {
			return ctx.Err()
		}
		err := c.session(ctx, first)
		if !c.everOnline.Load() && (errors.Is(err, ErrNoMessaging) || errors.Is(err, ErrRefused)) {
			c.lastErr.Store(&err)
			return err
		}
		if err != nil && !errors.Is(err, errLinkLost) {
			c.lastErr.Store(&err)
		}
		if c.everOnline.Load() {
			first = false
		}
		switch {
		case ctx.Err() != nil:
		case err == nil || errors.Is(err, errLinkLost):
			wait = bo.Min
			c.stats.reconnects.Add(1)
		default:
			wait = bo.Grow(wait)
		}
	}
	return ctx.Err()
}

// session is one connection's life. It returns nil or errLinkLost when
// the connection ended after being established.
func (c *Client) session(ctx context.Context, first bool) (err error) {
	cn, err := c.connect()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cur = cn
	c.inflight = 0
	for _, m := range c.outbox {
		m.published = false
	}
	c.mu.Unlock()
	wasOnline := false
	defer func() {
		c.online.Store(false)
		select {
		case res := <-c.syncReq:
			res <- ErrOffline
		default:
		}
		c.mu.Lock()
		c.cur = nil
		c.mu.Unlock()
		cn.c.Disconnect(0)
		cn.lost()
		if wasOnline && c.opts.OnOffline != nil {
			c.opts.OnOffline(err)
		}
	}()
	connected := time.Now()
	if err := c.wait(cn.c.Subscribe(topics.DeviceFilter(c.opts.UID, c.opts.DID), c.qos, nil), cn); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for _, f := range c.opts.Subscribe {
		if err := c.wait(cn.c.Subscribe(f, 1, nil), cn); err != nil {
			return fmt.Errorf("subscribe %s: %w", f, err)
		}
	}
	enc := "json"
	if c.opts.CBOR {
		enc = "cbor"
	}
	off := false
	var h codec.HelloResult
	err = c.call(ctx, cn, "hello", codec.HelloArgs{
		Enc: enc, MaxPkt: c.opts.MaxPkt,
		Feat: &codec.Feat{Typing: &c.opts.Typing, Calls: &off, Files: &off},
	}, &h, false)
	if errors.Is(err, ErrTimeout) && first {
		return ErrNoMessaging
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	atHead := !c.everOnline.Load() && c.opts.StartAtHead && c.lastUS == 0 && h.USHead > 0
	c.mu.Unlock()
	if atHead {
		c.jump(&Reset{US: h.USHead})
	}
	if err := c.syncAll(ctx, cn); err != nil {
		return err
	}
	c.onlineAt.Store(time.Now().UnixNano())
	c.online.Store(true)
	c.everOnline.Store(true)
	wasOnline = true
	if c.opts.OnOnline != nil {
		c.opts.OnOnline(time.Since(connected))
	}
	c.publishPending(cn)
	resend := time.NewTicker(c.opts.ResendAfter / 2)
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resend.C:
			c.expireUnconfirmed()
			c.publishPending(cn)
		case <-cn.done:
			return errLinkLost
		case res := <-c.syncReq:
			err := c.syncAll(ctx, cn)
			res <- err
			if err != nil {
				return err
			}
		case <-c.evNotify:
			if err := c.drain(ctx, cn); err != nil {
				return err
			}
		case <-c.sendNotify:
			c.publishPending(cn)
		}
	}
}

func (c *Client) connect() (*conn, error) {
	cn := &conn{done: make(chan struct{})}
	o := c.opts
	dial := o.Dial
	if dial == nil {
		dial = func() (net.Conn, error) { return net.DialTimeout("tcp", o.Addr, 10*time.Second) }
	}
	id := o.UID + "." + o.DID
	po := paho.NewClientOptions().AddBroker("tcp://tern").SetClientID(id).
		SetUsername(o.UID).SetPassword(o.Secret).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(!o.PersistentSession).
		SetKeepAlive(o.KeepAlive).SetConnectTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).SetOrderMatters(true).
		SetWill(c.up(topics.UpPres), `{"s":"off"}`, 1, false).
		SetConnectionLostHandler(func(paho.Client, error) { cn.lost() }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.onMessage(m) }).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
			nc, err := dial()
			if err != nil {
				return nil, err
			}
			return buffered(nc), nil
		})
	cn.c = paho.NewClient(po)
	tok := cn.c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s: %w", id, ErrTimeout)
	}
	if err := tok.Error(); err != nil {
		if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) ||
			errors.Is(err, packets.ErrorRefusedIDRejected) {
			return nil, fmt.Errorf("connect %s: %w: %v", id, ErrRefused, err)
		}
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	return cn, nil
}

// buffered gives a connection a read buffer. paho reads every packet
// with several small reads (type byte, then the length one byte at a
// time, then the body): unbuffered, that is three syscalls per packet.
func buffered(nc net.Conn) net.Conn { return &bufConn{Conn: nc, r: bufio.NewReaderSize(nc, 4096)} }

// bufConn reads through a buffer; paho reads from one goroutine only.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// wait waits for a paho token, the connection's end or the RPC timeout.
func (c *Client) wait(t paho.Token, cn *conn) error {
	tm := time.NewTimer(c.opts.RPCTimeout)
	defer tm.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-cn.done:
		return errLinkLost
	case <-tm.C:
		return ErrTimeout
	}
}

// onMessage runs on paho's router goroutine: it must not block.
func (c *Client) onMessage(m paho.Message) {
	topic := m.Topic()
	own := topics.Device(c.opts.UID, c.opts.DID, "")
	rest, ok := strings.CutPrefix(topic, own)
	if !ok {
		if c.opts.OnRetained != nil {
			c.opts.OnRetained(topic, m.Payload())
		}
		if strings.HasPrefix(topic, "im/p/") {
			c.queue('p', m.Payload(), topic)
		}
		return
	}
	if strings.HasPrefix(rest, topics.ChanFile+"/") {
		c.fileChunk(rest, m.Payload())
		return
	}
	switch rest {
	case topics.ChanIn:
		c.queue('i', m.Payload(), "")
	case topics.ChanEph:
		c.queue('e', m.Payload(), "")
	case topics.ChanRPC:
		rep, err := decodeReply(m.Payload())
		if err != nil {
			return // not for us to answer: the server never sends garbage
		}
		if rep.RID == "" {
			if rep.T == codec.TErr {
				c.stats.rejected.Add(1)
				c.queue('r', m.Payload(), "")
			}
			return
		}
		c.mu.Lock()
		ch := c.pending[rep.RID]
		delete(c.pending, rep.RID)
		c.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

func (c *Client) queue(kind byte, p []byte, topic string) {
	c.mu.Lock()
	c.queued = append(c.queued, p)
	c.kinds = append(c.kinds, kind)
	c.topicsQ = append(c.topicsQ, topic)
	c.mu.Unlock()
	notify(c.evNotify)
}

// call sends an RPC on cn and decodes its result into out.
func (c *Client) call(ctx context.Context, cn *conn, op string, args, out any, useCBOR bool) error {
	rid := "r" + strconv.FormatUint(c.rid.Add(1), 10)
	p, err := codec.Encode(struct {
		RID string `json:"rid" cbor:"rid"`
		Op  string `json:"op" cbor:"op"`
		A   any    `json:"a,omitempty" cbor:"a,omitempty"`
	}{rid, op, args}, useCBOR)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ch := make(chan *reply, 1)
	c.mu.Lock()
	c.pending[rid] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, rid)
		c.mu.Unlock()
	}()
	if err := c.wait(cn.c.Publish(c.up(topics.UpRPC), 1, false, p), cn); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	tm := time.NewTimer(c.opts.RPCTimeout)
	defer tm.Stop()
	select {
	case rep := <-ch:
		if !rep.OK {
			if rep.Err == nil {
				return &RPCError{Op: op, Code: 500, Msg: "failed without an error"}
			}
			rep.Err.Op = op
			return rep.Err
		}
		if err := rep.result(out); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return nil
	case <-cn.done:
		return fmt.Errorf("%s: %w", op, errLinkLost)
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return fmt.Errorf("%s: %w", op, ErrTimeout)
	}
}

// Call runs one RPC (§9) on the current connection and decodes its
// result into out (a pointer to a struct with the op's JSON keys as tags,
// or nil). A refusal is an *RPCError; no answer within Options.RPCTimeout
// is ErrTimeout; no connection is ErrOffline.
func (c *Client) Call(ctx context.Context, op string, args, out any) error {
	cn := c.current()
	if cn == nil {
		return fmt.Errorf("%s: %w", op, ErrOffline)
	}
	err := c.call(ctx, cn, op, args, out, c.opts.CBOR)
	if errors.Is(err, errLinkLost) {
		return fmt.Errorf("%s: %w", op, ErrOffline)
	}
	return err
}

package firmwaresim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/topics"
)

// Sentinel errors of the package.
var (
	// ErrNoMessaging means the broker accepted the connection but did not
	// answer hello: it has no messaging layer (or is not Tern).
	ErrNoMessaging = errors.New("firmwaresim: broker does not answer hello (no messaging layer)")
	// ErrRPCTimeout is an RPC that got no reply in time.
	ErrRPCTimeout = errors.New("firmwaresim: rpc timed out")
	// errLinkLost is a connection that went away while waiting.
	errLinkLost = errors.New("firmwaresim: connection lost")
)

// Credentials are one simulated device's identity.
type Credentials struct {
	UID   string `json:"uid"`
	DID   string `json:"did"`
	Token string `json:"token"`
}

// ClientID is {uid}.{did}.
func (c Credentials) ClientID() string { return c.UID + "." + c.DID }

// DeviceOptions configure one IM device.
type DeviceOptions struct {
	Index int // the device's index in the run (the Accounting key)
	Creds Credentials
	// Dial opens the transport to the broker (directly or through a Link).
	Dial func() (net.Conn, error)
	// QoS is the QoS of upstream messages and of the own subscription.
	QoS byte
	// CBOR asks for CBOR events in hello.
	CBOR bool
	// Clean asks for a clean session at every connect.
	Clean bool
	// Window bounds unacknowledged QoS 1 publishes (below the broker's
	// receive maximum).
	Window int
	// RPCTimeout bounds every RPC; hello failing with it means the broker
	// has no messaging layer.
	RPCTimeout time.Duration
	// ResendAfter republishes a message whose echo has not arrived this
	// long after its last PUBLISH (the server dedupes on cmid and sends
	// the original event again). 0 means 5s.
	ResendAfter time.Duration
	// Replay makes a fresh device sync its user's whole stream from 0;
	// by default it starts at the us_head of its first hello, as a device
	// that restored its position would (history is not this run's load).
	Replay bool
	// RunID makes cmids unique across runs of the same device file, and
	// tells this run's messages from earlier ones.
	RunID string
	// Acc receives everything the device applies.
	Acc *Accounting
	// OnPresence, if set, gets every presence payload received.
	OnPresence func(topic string, payload []byte)
	// ExtraSubs are subscribed after the own filter on every connection
	// (e.g. contacts' im/p/{uid}); refusals are ignored.
	ExtraSubs []string
}

// outMsg is a message in the outbox until the device sees its own echo.
type outMsg struct {
	cmid      string
	payload   []byte
	published bool      // on the current connection
	sends     int       // PUBLISHes so far, over all connections
	sentAt    time.Time // last PUBLISH
	notBefore time.Time // retry delay after a 429/503
}

// Device is one simulated IM device (PROTOCOL §3–§9).
type Device struct {
	opts DeviceOptions

	mu       sync.Mutex
	outbox   []*outMsg
	byCMID   map[string]*outMsg
	inflight int
	events   [][]byte // payloads of …/in and err events, in arrival order
	pending  map[string]chan *RPCReply
	cur      *conn

	evNotify   chan struct{}
	sendNotify chan struct{}
	syncReq    chan chan error
	onlineAt   atomic.Int64 // unix nanos of the last time it became online
	nextN      atomic.Uint64
	rid        atomic.Uint64
	online     atomic.Bool
	everOnline atomic.Bool
	lastErr    atomic.Pointer[error]

	// Owned by the Run goroutine.
	lastUS uint64
}

// conn is one MQTT connection of a device.
type conn struct {
	c    paho.Client
	done chan struct{}
	once sync.Once
}

func (c *conn) lost() { c.once.Do(func() { close(c.done) }) }

// NewDevice returns an unconnected device.
func NewDevice(o DeviceOptions) *Device {
	if o.Window <= 0 {
		o.Window = 32
	}
	if o.RPCTimeout <= 0 {
		o.RPCTimeout = 5 * time.Second
	}
	if o.ResendAfter <= 0 {
		o.ResendAfter = 5 * time.Second
	}
	return &Device{
		opts:       o,
		byCMID:     map[string]*outMsg{},
		pending:    map[string]chan *RPCReply{},
		evNotify:   make(chan struct{}, 1),
		sendNotify: make(chan struct{}, 1),
		syncReq:    make(chan chan error, 1),
	}
}

// OnlineSince returns when the device last became online (zero if never).
func (d *Device) OnlineSince() time.Time {
	if ns := d.onlineAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// SyncNow asks the online device to sync now and returns a channel that
// gets the result; the channel gets errLinkLost if the device is not
// online or loses its connection first.
func (d *Device) SyncNow() <-chan error {
	res := make(chan error, 1)
	if !d.online.Load() {
		res <- errLinkLost
		return res
	}
	select {
	case d.syncReq <- res:
	default:
		res <- errLinkLost // one is already queued
	}
	return res
}

// Err returns the last error that ended a connection attempt, if any.
func (d *Device) Err() error {
	if p := d.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Subscribe adds a subscription on the current connection (and, through
// ExtraSubs, on later ones); for filters that only become allowed after
// setup, such as a new contact's presence.
func (d *Device) Subscribe(filter string) error {
	d.mu.Lock()
	c := d.cur
	d.mu.Unlock()
	if c == nil {
		return errLinkLost
	}
	return wait(c.c.Subscribe(filter, 1, nil), c, d.opts.RPCTimeout)
}

// Online reports whether the device is connected and synced.
func (d *Device) Online() bool { return d.online.Load() }

// Outbox returns the number of messages not yet confirmed by their echo.
func (d *Device) Outbox() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.outbox)
}

// LastUS returns the last stream position the device applied.
func (d *Device) LastUS() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastUS
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

// Send queues a message to `to` (a uid or a cv) for recipients (device
// indexes, for the accounting). It never blocks on the network.
func (d *Device) Send(to string, recipients []int, bodySize int) {
	n := d.nextN.Add(1)
	st := Stamp{Run: d.opts.RunID, Sender: d.opts.Index, N: n, SentAt: time.Now()}
	cmid := d.opts.RunID + "-" + strconv.FormatUint(n, 10)
	p, err := encode(map[string]any{"to": to, "cmid": cmid, "b": st.TextBody(bodySize)}, d.opts.CBOR)
	if err != nil {
		panic(err) // a map of strings always encodes
	}
	d.opts.Acc.Sent(d.opts.Index, n, recipients)
	m := &outMsg{cmid: cmid, payload: p}
	d.mu.Lock()
	d.outbox = append(d.outbox, m)
	d.byCMID[cmid] = m
	d.mu.Unlock()
	notify(d.sendNotify)
}

// SetPresence publishes a presence status (§8) if connected.
func (d *Device) SetPresence(status string) bool {
	d.mu.Lock()
	c := d.cur
	d.mu.Unlock()
	if c == nil || !d.online.Load() {
		return false
	}
	p, err := encode(map[string]string{"s": status}, d.opts.CBOR)
	if err != nil {
		return false
	}
	c.c.Publish(d.up("pres"), 1, false, p)
	return true
}

func (d *Device) up(kind string) string {
	return topics.Up(d.opts.Creds.UID, d.opts.Creds.DID, kind)
}

func (d *Device) own() string {
	return topics.Device(d.opts.Creds.UID, d.opts.Creds.DID, "")
}

// Reconnect backoff: 50 ms after a lost link, doubling per failed attempt
// up to 2 s, each wait jittered over its upper half.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// grow is the backoff after one more failed attempt.
func grow(backoff time.Duration) time.Duration {
	return min(max(2*backoff, minBackoff), maxBackoff)
}

// sleepJittered waits between backoff/2 and backoff (nothing for 0) and
// reports false if ctx ended first.
func sleepJittered(ctx context.Context, backoff time.Duration) bool {
	if backoff <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		return true
	}
}

// Run keeps the device connected until ctx is done: connect, subscribe,
// hello, sync, resend the outbox, then apply events and publish new
// messages; on a lost connection it reconnects with a short jittered
// backoff. It returns ErrNoMessaging if hello is never answered on the
// first connection, or ctx's error.
func (d *Device) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	first := true
	for ctx.Err() == nil {
		if !sleepJittered(ctx, backoff) {
			return ctx.Err()
		}
		err := d.session(ctx, first)
		if errors.Is(err, ErrNoMessaging) && !d.everOnline.Load() {
			return err
		}
		if err != nil && !errors.Is(err, errLinkLost) {
			d.lastErr.Store(&err)
		}
		if d.everOnline.Load() {
			first = false
		}
		switch {
		case ctx.Err() != nil:
		case err == nil || errors.Is(err, errLinkLost):
			backoff = 0
			d.opts.Acc.Add(func(c *Counters) { c.Reconnects++ })
		default:
			backoff = grow(backoff)
		}
		if errors.Is(err, errLinkLost) {
			backoff = minBackoff
		}
	}
	return ctx.Err()
}

// session is one connection's life. It returns nil or errLinkLost when
// the connection ended after being established.
func (d *Device) session(ctx context.Context, first bool) error {
	c, err := d.connect()
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.cur = c
	d.inflight = 0
	for _, m := range d.outbox {
		m.published = false
	}
	d.mu.Unlock()
	defer func() {
		d.online.Store(false)
		select {
		case res := <-d.syncReq:
			res <- errLinkLost
		default:
		}
		d.mu.Lock()
		d.cur = nil
		d.mu.Unlock()
		c.c.Disconnect(0)
		c.lost()
	}()
	connected := time.Now()
	if err := wait(c.c.Subscribe(d.own()+"#", d.opts.QoS, nil), c, d.opts.RPCTimeout); err != nil {
		return err
	}
	for _, f := range d.opts.ExtraSubs {
		if err := wait(c.c.Subscribe(f, 1, nil), c, d.opts.RPCTimeout); err != nil {
			return err
		}
	}
	enc := "json"
	if d.opts.CBOR {
		enc = "cbor"
	}
	rep, err := d.rpc(ctx, c, "hello", map[string]any{
		"enc": enc, "maxPkt": 128 << 10,
		"feat": map[string]bool{"typing": false, "calls": false, "files": false},
	}, false)
	if errors.Is(err, ErrRPCTimeout) && first {
		return ErrNoMessaging
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("hello: %w", rep.Err)
	}
	if !d.everOnline.Load() && !d.opts.Replay && d.lastUS == 0 {
		var h HelloResult
		if err := rep.Result(&h); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		d.setLastUS(h.USHead)
		d.opts.Acc.ResetStream(d.opts.Index, h.USHead)
	}
	if err := d.syncAll(ctx, c); err != nil {
		return err
	}
	d.opts.Acc.CatchUp(time.Since(connected))
	d.onlineAt.Store(time.Now().UnixNano())
	d.online.Store(true)
	d.everOnline.Store(true)
	d.publishPending(c)
	resend := time.NewTicker(d.opts.ResendAfter / 2)
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resend.C:
			d.expireUnconfirmed()
			d.publishPending(c)
		case <-c.done:
			return errLinkLost
		case res := <-d.syncReq:
			err := d.syncAll(ctx, c)
			res <- err
			if err != nil {
				return err
			}
		case <-d.evNotify:
			if err := d.drainEvents(ctx, c); err != nil {
				return err
			}
		case <-d.sendNotify:
			d.publishPending(c)
		}
	}
}

func (d *Device) connect() (*conn, error) {
	c := &conn{done: make(chan struct{})}
	cr := d.opts.Creds
	o := paho.NewClientOptions().AddBroker("tcp://sim").SetClientID(cr.ClientID()).
		SetUsername(cr.UID).SetPassword(cr.Token).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(d.opts.Clean).
		SetKeepAlive(30*time.Second).SetConnectTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).SetOrderMatters(true).
		SetWill(d.up("pres"), `{"s":"off"}`, 1, false).
		SetConnectionLostHandler(func(paho.Client, error) { c.lost() }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.onMessage(m) }).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) { return d.opts.Dial() })
	c.c = paho.NewClient(o)
	if err := wait(c.c.Connect(), nil, 15*time.Second); err != nil {
		return nil, fmt.Errorf("connect %s: %w", cr.ClientID(), err)
	}
	return c, nil
}

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

// onMessage runs on paho's router goroutine: it must not block.
func (d *Device) onMessage(m paho.Message) {
	topic := m.Topic()
	rest, ok := strings.CutPrefix(topic, d.own())
	if !ok {
		if strings.HasPrefix(topic, topics.Presence("")) && d.opts.OnPresence != nil {
			d.opts.OnPresence(topic, m.Payload())
		}
		return
	}
	switch rest {
	case "in":
		d.queue(m.Payload())
	case "rpc":
		rep, err := decodeReply(m.Payload())
		if err != nil {
			return
		}
		if rep.RID == "" { // an err event for a message
			d.queue(m.Payload())
			return
		}
		d.mu.Lock()
		ch := d.pending[rep.RID]
		delete(d.pending, rep.RID)
		d.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

func (d *Device) queue(p []byte) {
	d.mu.Lock()
	d.events = append(d.events, p)
	d.mu.Unlock()
	notify(d.evNotify)
}

// rpc sends a request and waits for its reply.
func (d *Device) rpc(ctx context.Context, c *conn, op string, args any, useCBOR bool) (*RPCReply, error) {
	rid := "r" + strconv.FormatUint(d.rid.Add(1), 10)
	p, err := encode(map[string]any{"rid": rid, "op": op, "a": args}, useCBOR)
	if err != nil {
		return nil, err
	}
	ch := make(chan *RPCReply, 1)
	d.mu.Lock()
	d.pending[rid] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, rid)
		d.mu.Unlock()
	}()
	if err := wait(c.c.Publish(d.up("rpc"), 1, false, p), c, d.opts.RPCTimeout); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	select {
	case rep := <-ch:
		return rep, nil
	case <-c.done:
		return nil, errLinkLost
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d.opts.RPCTimeout):
		return nil, fmt.Errorf("%s: %w", op, ErrRPCTimeout)
	}
}

// Call runs one RPC on the current connection (for provisioning and
// scenario setup) and decodes the result into out.
func (d *Device) Call(ctx context.Context, op string, args, out any) error {
	d.mu.Lock()
	c := d.cur
	d.mu.Unlock()
	if c == nil {
		return errLinkLost
	}
	rep, err := d.rpc(ctx, c, op, args, d.opts.CBOR)
	if err != nil {
		return err
	}
	if !rep.OK {
		if rep.Err == nil {
			return fmt.Errorf("%s: failed without error", op)
		}
		return fmt.Errorf("%s: %w", op, rep.Err)
	}
	if out != nil {
		return rep.Result(out)
	}
	return nil
}

// syncAll runs sync from the last applied us until more is false.
func (d *Device) syncAll(ctx context.Context, c *conn) error {
	for {
		since := d.lastUS
		rep, err := d.rpc(ctx, c, "sync", map[string]any{"since": since, "max": 500, "maxBytes": 256 << 10}, d.opts.CBOR)
		if err != nil {
			return err
		}
		if !rep.OK {
			return fmt.Errorf("sync: %w", rep.Err)
		}
		var r syncResult
		if err := rep.Result(&r); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		if r.Reset {
			d.opts.Acc.ResetStream(d.opts.Index, r.USHead)
			d.setLastUS(r.USHead)
			continue
		}
		for i := range r.Ev {
			ev := &r.Ev[i]
			if ev.US > d.lastUS+1 {
				// The stream itself has a hole: count it and move on.
				d.opts.Acc.Add(func(c *Counters) { c.OutOfOrder++ })
				d.setLastUS(ev.US - 1)
				d.opts.Acc.ResetStream(d.opts.Index, ev.US-1)
			}
			d.apply(ev)
		}
		if !r.More || d.lastUS <= since {
			return nil
		}
	}
}

func (d *Device) setLastUS(us uint64) {
	d.mu.Lock()
	d.lastUS = us
	d.mu.Unlock()
}

// drainEvents applies queued live events; a gap triggers a sync.
func (d *Device) drainEvents(ctx context.Context, c *conn) error {
	for {
		d.mu.Lock()
		evs := d.events
		d.events = nil
		d.mu.Unlock()
		if len(evs) == 0 {
			return nil
		}
		gap := false
		for _, p := range evs {
			var ev Event
			if err := unmarshal(p, &ev); err != nil {
				continue
			}
			if ev.T == "err" {
				d.onErr(&ev)
				continue
			}
			if ev.US > d.lastUS+1 {
				gap = true
				continue // sync brings it, in order
			}
			d.apply(&ev)
		}
		if gap {
			d.opts.Acc.Add(func(c *Counters) { c.Gaps++ })
			if err := d.syncAll(ctx, c); err != nil {
				return err
			}
		}
	}
}

// apply applies one stream event if it is the next of the stream.
func (d *Device) apply(ev *Event) {
	if ev.US == 0 {
		return
	}
	if ev.US <= d.lastUS {
		d.opts.Acc.Add(func(c *Counters) { c.Redelivery++ })
		return
	}
	d.setLastUS(ev.US)
	cr := d.opts.Creds
	if ev.T != "msg" {
		d.opts.Acc.StreamEvent(d.opts.Index, ev.US)
		return
	}
	if ev.From == cr.UID && ev.FD == cr.DID {
		d.confirm(ev.CMID)
		d.opts.Acc.StreamEvent(d.opts.Index, ev.US)
		return
	}
	st, err := ParseTextBody(ev.B)
	if err != nil || st.Run != d.opts.RunID {
		// Not a message of this run (another client, an earlier run).
		d.opts.Acc.StreamEvent(d.opts.Index, ev.US)
		return
	}
	d.opts.Acc.Applied(d.opts.Index, Delivery{
		Sender: st.Sender, N: st.N, CV: ev.CV, Seq: ev.Seq, US: ev.US,
		SentAt: st.SentAt, At: time.Now(),
	})
}

// confirm drops an echoed message from the outbox.
func (d *Device) confirm(cmid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.byCMID[cmid]
	if m == nil {
		return
	}
	delete(d.byCMID, cmid)
	for i, o := range d.outbox {
		if o == m {
			d.outbox = append(d.outbox[:i], d.outbox[i+1:]...)
			break
		}
	}
}

// onErr handles a rejected message: 429 and 503 are retried after a
// pause, anything else is final.
func (d *Device) onErr(ev *Event) {
	d.opts.Acc.Add(func(c *Counters) { c.Rejected++ })
	if ev.CMID == "" {
		return
	}
	if ev.Code == 429 || ev.Code == 503 {
		d.mu.Lock()
		if m := d.byCMID[ev.CMID]; m != nil {
			m.published = false
			m.notBefore = time.Now().Add(time.Second)
		}
		d.mu.Unlock()
		time.AfterFunc(time.Second, func() { notify(d.sendNotify) })
		return
	}
	d.confirm(ev.CMID)
}

// expireUnconfirmed marks messages whose echo is overdue for a resend.
func (d *Device) expireUnconfirmed() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.outbox {
		if m.published && time.Since(m.sentAt) > d.opts.ResendAfter {
			m.published = false
		}
	}
}

// publishPending publishes outbox messages not yet sent on this
// connection, in order, within the window.
func (d *Device) publishPending(c *conn) {
	now := time.Now()
	for {
		d.mu.Lock()
		var m *outMsg
		if d.inflight < d.opts.Window {
			for _, o := range d.outbox {
				if !o.published {
					if now.Before(o.notBefore) {
						break // keep the order: wait for the retry
					}
					m = o
					break
				}
			}
		}
		if m == nil {
			d.mu.Unlock()
			return
		}
		m.published = true
		resent := m.sends > 0
		m.sends++
		m.sentAt = now
		d.inflight++
		d.mu.Unlock()
		tok := c.c.Publish(d.up("msg"), d.opts.QoS, false, m.payload)
		d.opts.Acc.Add(func(c *Counters) {
			c.Published++
			if resent {
				c.Resent++
			}
		})
		releaseWhenDone(tok, c.done, func() {
			d.mu.Lock()
			if d.cur == c {
				d.inflight--
			}
			d.mu.Unlock()
			notify(d.sendNotify)
		})
	}
}

package firmwaresim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// Scenarios.
const (
	ScenarioDM       = "dm"
	ScenarioGroup    = "group"
	ScenarioPresence = "presence"
	ScenarioMixed    = "mixed"
	ScenarioIdle     = "idle"
)

// RunOptions configure a run.
type RunOptions struct {
	// MQTT is host:port of the broker's MQTT listener, or a
	// comma-separated list (the nodes of a cluster): device i dials the
	// (i mod n)-th.
	MQTT string
	// Fleet holds the provisioned devices (IM mode; ignored in raw mode).
	Fleet    *Fleet
	Scenario string
	// Devices is how many devices take part (the first of the fleet in IM
	// mode).
	Devices int
	// Rate is the total messages per second over all senders; 0 means
	// closed loop: every sender keeps Window messages in flight.
	Rate     float64
	Duration time.Duration
	QoS      byte
	Payload  int
	CBOR     bool
	Clean    bool
	Window   int
	// Senders limits sending to the first Senders devices (e.g. 1 for a
	// one-sender group fan-out); 0 means every device sends.
	Senders int
	// Link impairs every device's link through its own proxy.
	Link LinkOptions
	// StormAt cuts every device's link at once at this offset; 0 never.
	StormAt time.Duration
	// Drain bounds the wait for everything to arrive after Duration.
	Drain time.Duration
	// SourceIPs spread the dials over these loopback source addresses
	// (to pass 64k ports per address); empty means the default.
	SourceIPs []string
	// ConnectConcurrency bounds simultaneous initial connects.
	ConnectConcurrency int
	// Raw selects plain MQTT: dm = pairs, group = fan-out groups of
	// GroupSize, idle = connected subscribers.
	Raw       bool
	RawUser   string
	RawPass   string
	GroupSize int
	// Replay makes fresh devices sync their whole stream from 0 instead
	// of starting at us_head.
	Replay bool
	// RPCTimeout bounds IM RPCs (hello included).
	RPCTimeout time.Duration
	// BrokerPID or MetricsURL, if set, let the idle scenario report the
	// broker's RSS per connection.
	BrokerPID  int
	MetricsURL string
	// Progress, if set, is called about once a second with a live report.
	Progress func(*Report)
}

// simClient is what the runner needs of a Device or a RawClient.
type simClient interface {
	Run(ctx context.Context) error
	Online() bool
	OnlineSince() time.Time
	Err() error
}

// cutter is a device's link as the runner sees it.
type cutter interface {
	Dial() (net.Conn, error)
	Cut()
	SetDrop(p float64)
	Close() error
	Drops() uint64
}

// Runner runs one scenario.
type Runner struct {
	o       RunOptions
	acc     *Accounting
	clients []simClient
	devs    []*Device
	raws    []*RawClient
	links   []cutter
	runID   string

	start     time.Time
	loadEnd   atomic.Int64
	presence  atomic.Uint64
	presOOO   atomic.Uint64
	presMu    sync.Mutex
	presLast  map[string]uint64
	connectAt time.Duration
	storm     time.Duration
	stormN    int
	rssBefore int64
	// deliveredInLoad is the delivered count when the load phase ended:
	// the throughput figure excludes the drain.
	deliveredInLoad uint64
	warnings        []string
}

// NewRunner validates o and returns a runner.
func NewRunner(o RunOptions) (*Runner, error) {
	switch o.Scenario {
	case ScenarioDM, ScenarioGroup, ScenarioIdle:
	case ScenarioPresence, ScenarioMixed:
		if o.Raw {
			return nil, fmt.Errorf("scenario %s needs the IM protocol (not --raw)", o.Scenario)
		}
	default:
		return nil, fmt.Errorf("unknown scenario %q (dm, group, presence, mixed, idle)", o.Scenario)
	}
	if o.Devices < 1 {
		return nil, errors.New("need at least one device")
	}
	if o.Duration <= 0 {
		return nil, errors.New("duration must be positive")
	}
	if o.QoS > 1 {
		return nil, errors.New("qos must be 0 or 1")
	}
	if o.Window <= 0 {
		o.Window = 32
	}
	if o.Senders < 0 || o.Senders > o.Devices {
		return nil, fmt.Errorf("senders %d must be within 0..devices (%d)", o.Senders, o.Devices)
	}
	if o.Senders == 0 {
		o.Senders = o.Devices
	}
	if o.Drain <= 0 {
		o.Drain = 30 * time.Second
	}
	if o.ConnectConcurrency <= 0 {
		o.ConnectConcurrency = 256
	}
	if o.GroupSize <= 0 {
		o.GroupSize = 10
	}
	if o.Payload <= 0 {
		o.Payload = 64
	}
	if !o.Raw {
		if o.Fleet == nil {
			return nil, errors.New("IM mode needs a devices file (run provision first)")
		}
		if n := len(o.Fleet.Devices()); n < o.Devices {
			return nil, fmt.Errorf("devices file has %d devices, %d asked for", n, o.Devices)
		}
	}
	id, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	return &Runner{o: o, acc: NewAccounting(), runID: id, presLast: map[string]uint64{}}, nil
}

// Accounting returns the run's ledger.
func (r *Runner) Accounting() *Accounting { return r.acc }

// dialer returns the dial function of device i and its link (nil when
// dialling directly without a storm).
func (r *Runner) dialer(i int) (func() (net.Conn, error), cutter, error) {
	addrs := strings.Split(r.o.MQTT, ",")
	addr := addrs[i%len(addrs)]
	var local *net.TCPAddr
	bind := "127.0.0.1"
	if n := len(r.o.SourceIPs); n > 0 {
		ip := r.o.SourceIPs[i%n]
		local = &net.TCPAddr{IP: net.ParseIP(ip)}
		bind = ip
	}
	if r.o.Link.Active() {
		l, err := NewLink(bind, addr, local, r.o.Link)
		if err != nil {
			return nil, nil, err
		}
		// Drops start after the connect phase (Run sets the chance once
		// every device is online): with drops from the start, devices that
		// need longer to come up than to go down again are never all
		// online at once (issue 11, defect 7).
		l.SetDrop(0)
		lc := &proxyLink{Link: l}
		return r.buffered(lc.Dial), lc, nil
	}
	dl := &directLink{addr: addr, d: net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}}
	return r.buffered(dl.Dial), dl, nil
}

// buffered gives raw clients' connections a read buffer; IM devices get
// one from the client package.
func (r *Runner) buffered(dial func() (net.Conn, error)) func() (net.Conn, error) {
	if !r.o.Raw {
		return dial
	}
	return buffered(dial)
}

// buffered gives the connections of dial a read buffer. paho reads every
// packet with several small reads (type byte, then the length one byte at
// a time, then the body): unbuffered, that was three syscalls per packet
// and a fifth of the simulator's CPU, which the broker on the same
// machine then lacks.
func buffered(dial func() (net.Conn, error)) func() (net.Conn, error) {
	return func() (net.Conn, error) {
		c, err := dial()
		if err != nil {
			return nil, err
		}
		return &bufConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
	}
}

// bufConn reads through a buffer; paho reads from one goroutine only.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// proxyLink dials a Link.
type proxyLink struct{ *Link }

func (p *proxyLink) Dial() (net.Conn, error) {
	return net.DialTimeout("tcp", p.Addr(), 10*time.Second)
}

// directLink dials the broker and can cut the live connection (a storm
// without impairments needs no proxy).
type directLink struct {
	addr  string
	d     net.Dialer
	mu    sync.Mutex
	c     *cutConn
	drops atomic.Uint64
}

func (l *directLink) Dial() (net.Conn, error) {
	c, err := l.d.Dial("tcp", l.addr)
	if err != nil {
		return nil, err
	}
	cc := &cutConn{Conn: c}
	l.mu.Lock()
	l.c = cc
	l.mu.Unlock()
	return cc, nil
}

func (l *directLink) Cut() {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		l.drops.Add(1)
		c.cut()
	}
}

// cutConn makes a local cut look like the peer went away: paho treats
// "use of closed network connection" as its own doing and would wait for
// the keepalive to notice.
type cutConn struct {
	net.Conn
	isCut atomic.Bool
}

func (c *cutConn) cut() {
	c.isCut.Store(true)
	c.Conn.Close()
}

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.isCut.Load() {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *cutConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && c.isCut.Load() {
		return n, io.ErrClosedPipe
	}
	return n, err
}

func (l *directLink) SetDrop(float64) {}
func (l *directLink) Close() error    { l.Cut(); return nil }
func (l *directLink) Drops() uint64   { return l.drops.Load() }

// build creates the clients and links.
func (r *Runner) build() error {
	o := r.o
	var creds []Credentials
	if !o.Raw {
		creds = o.Fleet.Devices()[:o.Devices]
	}
	peersOf := r.presencePeers(creds)
	for i := range o.Devices {
		dial, link, err := r.dialer(i)
		if err != nil {
			return err
		}
		r.links = append(r.links, link)
		if o.Raw {
			rc := NewRawClient(RawOptions{
				Index: i, ClientID: "sim-" + r.runID + "-" + strconv.Itoa(i),
				Username: o.RawUser, Password: o.RawPass, Dial: dial, QoS: o.QoS,
				Window: o.Window, Subs: r.rawSubs(i), Acc: r.acc,
			})
			r.raws = append(r.raws, rc)
			r.clients = append(r.clients, rc)
			continue
		}
		var extra []string
		for _, p := range peersOf[i] {
			extra = append(extra, topics.Presence(p))
		}
		d, err := NewDevice(DeviceOptions{
			Index: i, Creds: creds[i], Dial: dial, QoS: o.QoS, CBOR: o.CBOR, Clean: o.Clean,
			Window: o.Window, RPCTimeout: o.RPCTimeout, RunID: r.runID, Acc: r.acc,
			ExtraSubs: extra, OnPresence: r.onPresence(i), Replay: o.Replay,
		})
		if err != nil {
			return err
		}
		r.devs = append(r.devs, d)
		r.clients = append(r.clients, d)
	}
	return nil
}

// rawSubs: pairs subscribe to their own inbox topic, fan-out members to
// their group's topic, idle clients to their own topic.
func (r *Runner) rawSubs(i int) []string {
	switch r.o.Scenario {
	case ScenarioGroup:
		return []string{"bench/g/" + strconv.Itoa(i/r.o.GroupSize)}
	default:
		return []string{"bench/d/" + strconv.Itoa(i)}
	}
}

// presencePeers lists, per device, the users whose presence it watches
// (its DM peer's) in the presence and mixed scenarios.
func (r *Runner) presencePeers(creds []Credentials) map[int][]string {
	out := map[int][]string{}
	if r.o.Scenario != ScenarioPresence && r.o.Scenario != ScenarioMixed {
		return out
	}
	for i := range creds {
		if p := pairPeer(i, len(creds)); p >= 0 && creds[p].UID != creds[i].UID {
			out[i] = []string{creds[p].UID}
		}
	}
	return out
}

// pairPeer pairs devices 2k and 2k+1; the odd last device has none.
func pairPeer(i, n int) int {
	p := i ^ 1
	if p >= n {
		return -1
	}
	return p
}

func (r *Runner) onPresence(dev int) func(string, []byte) {
	return func(topic string, p []byte) {
		var pr struct {
			PV uint64 `json:"pv"`
		}
		if codec.Decode(p, &pr) != nil {
			return
		}
		r.presence.Add(1)
		key := strconv.Itoa(dev) + " " + topic
		r.presMu.Lock()
		if pr.PV != 0 && pr.PV <= r.presLast[key] {
			r.presOOO.Add(1)
		}
		r.presLast[key] = max(pr.PV, r.presLast[key])
		r.presMu.Unlock()
	}
}

// Run connects every device, drives the scenario for Duration, drains
// and returns the final report. ctx ending stops it early (the report is
// still returned). A broker without messaging makes IM runs fail with
// ErrNoMessaging.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	if r.o.Scenario == ScenarioIdle && (r.o.BrokerPID != 0 || r.o.MetricsURL != "") {
		rss, err := BrokerRSS(r.o.BrokerPID, r.o.MetricsURL)
		if err != nil {
			r.warnings = append(r.warnings, "broker RSS: "+err.Error())
		}
		r.rssBefore = rss
	}
	if err := r.build(); err != nil {
		r.closeLinks()
		return nil, err
	}
	defer r.closeLinks()
	cctx, stopClients := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, len(r.clients))
	r.start = time.Now()
	sem := make(chan struct{}, r.o.ConnectConcurrency)
	connectDeadline := time.Now().Add(r.o.Duration + 60*time.Second)
	for _, c := range r.clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			started := make(chan struct{})
			go func() {
				// Free the slot once connected (or after a while).
				defer close(started)
				t := time.NewTicker(5 * time.Millisecond)
				defer t.Stop()
				for !c.Online() && time.Now().Before(connectDeadline) && cctx.Err() == nil {
					<-t.C
				}
				<-sem
			}()
			if err := c.Run(cctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
			}
			<-started
		}()
		if ctx.Err() != nil {
			break
		}
	}
	defer func() {
		stopClients()
		wg.Wait()
	}()
	if err := r.waitOnline(ctx, errc, time.Now().Add(r.o.Duration+60*time.Second)); err != nil {
		return r.report(time.Since(r.start)), err
	}
	r.connectAt = time.Since(r.start)
	for _, l := range r.links {
		l.SetDrop(r.o.Link.Drop)
	}
	r.addContacts(ctx)
	lctx, stopLoad := context.WithTimeout(ctx, r.o.Duration)
	defer stopLoad()
	loadStart := time.Now()
	var lw sync.WaitGroup
	lw.Add(1)
	go func() { defer lw.Done(); r.drive(lctx) }()
	if r.o.StormAt > 0 {
		lw.Add(1)
		go func() { defer lw.Done(); r.stormAfter(lctx, r.o.StormAt) }()
	}
	r.progressUntil(lctx, loadStart)
	lw.Wait()
	r.loadEnd.Store(int64(time.Since(loadStart)))
	atEnd, _, _ := r.acc.Snapshot()
	r.deliveredInLoad = atEnd.Delivered
	for _, l := range r.links {
		l.SetDrop(0)
	}
	r.drain(ctx)
	rep := r.report(time.Duration(r.loadEnd.Load()))
	if r.o.Scenario == ScenarioIdle {
		r.measureRSS(rep)
	}
	return rep, nil
}

func (r *Runner) closeLinks() {
	for _, l := range r.links {
		if err := l.Close(); err != nil {
			continue // a listener already closed; nothing else to do
		}
	}
}

// waitOnline waits until every client is online, reporting progress
// (connected n/N, time since the start) about once a second.
func (r *Runner) waitOnline(ctx context.Context, errc chan error, deadline time.Time) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		n := r.countOnline()
		if n == len(r.clients) {
			return nil
		}
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if time.Now().After(deadline) {
			for _, c := range r.clients {
				if err := c.Err(); err != nil && !c.Online() {
					return fmt.Errorf("only %d of %d devices online; last error: %w", r.countOnline(), len(r.clients), err)
				}
			}
			return fmt.Errorf("only %d of %d devices online", r.countOnline(), len(r.clients))
		}
		if r.o.Progress != nil && time.Since(last) >= time.Second {
			last = time.Now()
			rep := r.report(0)
			rep.Phase = "connect"
			rep.Seconds = time.Since(r.start).Seconds()
			r.o.Progress(rep)
		}
	}
}

func (r *Runner) countOnline() int {
	n := 0
	for _, c := range r.clients {
		if c.Online() {
			n++
		}
	}
	return n
}

// progressUntil calls Progress every second until ctx is done.
func (r *Runner) progressUntil(ctx context.Context, loadStart time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastDlv uint64
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.o.Progress == nil {
			continue
		}
		rep := r.report(time.Since(loadStart))
		rep.Phase = "load"
		now := time.Now()
		rep.DeliveredPerSec = float64(rep.Delivered-lastDlv) / now.Sub(lastAt).Seconds()
		lastDlv, lastAt = rep.Delivered, now
		r.o.Progress(rep)
	}
}

// stormAfter cuts every link at once after d and times the recovery.
func (r *Runner) stormAfter(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(d):
	}
	t0 := time.Now()
	for _, l := range r.links {
		l.Cut()
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	deadline := t0.Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		back := 0
		var last time.Time
		for _, c := range r.clients {
			if s := c.OnlineSince(); s.After(t0) && c.Online() {
				back++
				if s.After(last) {
					last = s
				}
			}
		}
		if back == len(r.clients) {
			r.storm = last.Sub(t0)
			r.stormN = back
			return
		}
		<-t.C
	}
	r.storm = -1
}

// addContacts makes each presence watcher a contact of its peer
// (contacts.add, §9–§10) and subscribes to the peer's presence, which the
// ACL allows only for contacts.
func (r *Runner) addContacts(ctx context.Context) {
	failed := 0
	var lastErr error
	for _, d := range r.devs {
		for _, f := range d.opts.ExtraSubs {
			peer := strings.TrimPrefix(f, topics.Presence(""))
			if err := d.Call(ctx, "contacts.add", map[string]string{"uid": peer}, nil); err != nil {
				failed, lastErr = failed+1, err
				continue
			}
			if err := d.Subscribe(f); err != nil {
				failed, lastErr = failed+1, err
			}
		}
	}
	if failed > 0 {
		r.warnings = append(r.warnings, fmt.Sprintf("presence: %d contacts.add/subscribe failed (last: %v)", failed, lastErr))
	}
}

// drive generates the scenario's load until ctx is done.
func (r *Runner) drive(ctx context.Context) {
	if r.o.Scenario == ScenarioIdle {
		<-ctx.Done()
		return
	}
	if r.o.Rate <= 0 {
		r.closedLoop(ctx)
		return
	}
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var sent float64
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := r.o.Rate * time.Since(start).Seconds()
		for sent+1 <= due {
			sent++
			r.sendOne(next % r.o.Senders)
			next++
		}
	}
}

// closedLoop keeps every sender's window full until ctx is done.
func (r *Runner) closedLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range r.o.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for ctx.Err() == nil {
				if r.o.Raw {
					for r.sendOne(i) {
					}
					select {
					case <-ctx.Done():
					case <-r.raws[i].Freed():
					case <-t.C:
					}
					continue
				}
				for r.devs[i].Outbox() < r.o.Window && r.devs[i].Online() && ctx.Err() == nil {
					r.sendOne(i)
				}
				select {
				case <-ctx.Done():
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
}

// sendOne makes device i send one message of the scenario; it reports
// whether something was sent.
func (r *Runner) sendOne(i int) bool {
	o := r.o
	if o.Raw {
		switch o.Scenario {
		case ScenarioGroup:
			g := i / o.GroupSize
			var rcp []int
			for k := g * o.GroupSize; k < min((g+1)*o.GroupSize, len(r.clients)); k++ {
				if k != i {
					rcp = append(rcp, k)
				}
			}
			return r.raws[i].Publish("bench/g/"+strconv.Itoa(g), rcp, o.Payload)
		default:
			p := pairPeer(i, len(r.clients))
			if p < 0 {
				return false
			}
			return r.raws[i].Publish("bench/d/"+strconv.Itoa(p), []int{p}, o.Payload)
		}
	}
	kind := o.Scenario
	if kind == ScenarioMixed {
		switch x := rand.IntN(10); {
		case x < 7:
			kind = ScenarioDM
		case x < 9:
			kind = ScenarioGroup
		default:
			kind = ScenarioPresence
		}
	}
	d := r.devs[i]
	switch kind {
	case ScenarioPresence:
		st := "away"
		if rand.IntN(2) == 0 {
			st = "on"
		}
		return d.SetPresence(st)
	case ScenarioGroup:
		g, ok := r.groupOf(i)
		if !ok {
			return false
		}
		d.Send("g:"+g.GID, r.recipients(i, g.Members), o.Payload)
		return true
	default:
		p := pairPeer(i, len(r.devs))
		if p < 0 {
			return false
		}
		me, peer := r.devs[i].opts.Creds.UID, r.devs[p].opts.Creds.UID
		if me == peer {
			return false
		}
		d.Send(peer, r.recipients(i, []string{me, peer}), o.Payload)
		return true
	}
}

// recipients are the run's devices of members, except the sender.
func (r *Runner) recipients(sender int, members []string) []int {
	in := map[string]bool{}
	for _, m := range members {
		in[m] = true
	}
	var out []int
	for k, d := range r.devs {
		if k != sender && in[d.opts.Creds.UID] {
			out = append(out, k)
		}
	}
	return out
}

// groupOf picks a created group device i's user is a member of.
func (r *Runner) groupOf(i int) (Group, bool) {
	uid := r.devs[i].opts.Creds.UID
	var mine []Group
	for _, g := range r.o.Fleet.Groups {
		if !g.Created {
			continue
		}
		for _, m := range g.Members {
			if m == uid {
				mine = append(mine, g)
				break
			}
		}
	}
	if len(mine) == 0 {
		return Group{}, false
	}
	return mine[rand.IntN(len(mine))], true
}

// drain waits until every message arrived or Drain passed. IM devices
// first empty their outboxes, then sync once more.
func (r *Runner) drain(ctx context.Context) {
	deadline := time.Now().Add(r.o.Drain)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	if r.o.Raw {
		// No recovery in plain MQTT: wait for in-flight deliveries only.
		var last uint64
		stable := 0
		for time.Now().Before(deadline) && ctx.Err() == nil && stable < 10 {
			c, _, _ := r.acc.Snapshot()
			if c.Delivered == last {
				stable++
			} else {
				stable, last = 0, c.Delivered
			}
			<-t.C
		}
		return
	}
	// Outboxes empty through echoes (live or synced); each round asks
	// every online device to sync, which also brings overdue echoes.
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var chs []<-chan error
		for _, d := range r.devs {
			if d.Online() {
				chs = append(chs, d.SyncNow())
			}
		}
		ok := len(chs) == len(r.devs)
		for _, ch := range chs {
			select {
			case err := <-ch:
				ok = ok && err == nil
			case <-time.After(time.Until(deadline)):
				ok = false
			}
		}
		if ok && r.outboxesEmpty() && r.acc.Lost() == 0 {
			return
		}
		<-t.C
	}
}

func (r *Runner) outboxesEmpty() bool {
	for _, d := range r.devs {
		if d.Outbox() > 0 {
			return false
		}
	}
	return true
}

package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/client"
)

const pw = "password-1"

// recorder collects a client's events.
type recorder struct {
	mu  sync.Mutex
	evs []client.Event
	ch  chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1)} }

func (r *recorder) on(e client.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// waitFor waits until an event satisfies ok and returns it.
func (r *recorder) waitFor(t *testing.T, what string, ok func(client.Event) bool) client.Event {
	t.Helper()
	deadline := time.After(brokertest.Timeout)
	seen := 0
	for {
		r.mu.Lock()
		evs := r.evs[seen:]
		seen = len(r.evs)
		r.mu.Unlock()
		for _, e := range evs {
			if ok(e) {
				return e
			}
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("no %s within %v", what, brokertest.Timeout)
		}
	}
}

func (r *recorder) messages() []*client.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*client.Message
	for _, e := range r.evs {
		if m, ok := e.(*client.Message); ok {
			out = append(out, m)
		}
	}
	return out
}

// start runs a client until the test ends and waits until it is online.
func start(t *testing.T, o client.Options) (*client.Client, *recorder) {
	t.Helper()
	rec := newRecorder()
	if o.OnEvent == nil {
		o.OnEvent = rec.on
	}
	if o.Secret == "" {
		o.Secret = pw
	}
	if o.RPCTimeout == 0 {
		o.RPCTimeout = 5 * time.Second
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	waitOnline(t, c, done)
	return c, rec
}

func waitOnline(t *testing.T, c *client.Client, done chan error) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(brokertest.Timeout)
	for !c.Online() {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("Run ended before online: %v", err)
		case <-deadline:
			t.Fatalf("not online: %v", c.Err())
		case <-tick.C:
		}
	}
}

func isMsg(body string) func(client.Event) bool {
	return func(e client.Event) bool {
		m, ok := e.(*client.Message)
		return ok && m.B == body
	}
}

func TestSendReceiveBothEncodings(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	addr := b.Addr(broker.ListenerMQTT)
	for _, cb := range []bool{false, true} {
		did := "json"
		if cb {
			did = "cbor"
		}
		alice, ar := start(t, client.Options{Addr: addr, UID: "alice", DID: did, CBOR: cb, StartAtHead: true})
		bob, br := start(t, client.Options{Addr: addr, UID: "bob", DID: did, CBOR: cb, StartAtHead: true})
		cmid := alice.Send("bob", "hi bob "+did)
		got := br.waitFor(t, "bob's message", isMsg("hi bob "+did)).(*client.Message)
		if got.From != "alice" || got.FD != did || got.CV != "d:alice:bob" || got.Seq == 0 || got.US == 0 || len(got.ID) != 26 {
			t.Fatalf("%s: %+v", did, got)
		}
		echo := ar.waitFor(t, "alice's echo", isMsg("hi bob "+did)).(*client.Message)
		if echo.CMID != cmid || echo.ID != got.ID {
			t.Fatalf("%s: echo %+v, want cmid %s id %s", did, echo, cmid, got.ID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
		if err := alice.Flush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
		var h struct {
			Items []struct {
				B string `json:"b"`
			} `json:"items"`
		}
		if err := alice.Call(ctx, "history", map[string]any{"cv": "d:alice:bob"}, &h); err != nil {
			t.Fatalf("%s: history: %v", did, err)
		}
		cancel()
		if n := len(h.Items); n == 0 || h.Items[n-1].B != "hi bob "+did {
			t.Fatalf("%s: history %+v", did, h)
		}
		// Edits, reactions and receipts come back as typed events.
		if _, err := alice.Edit(got.ID, "hello bob"); err != nil {
			t.Fatal(err)
		}
		br.waitFor(t, "edit", func(e client.Event) bool {
			x, ok := e.(*client.Edit)
			return ok && x.Target == got.ID && x.B == "hello bob" && x.From == "alice"
		})
		if _, err := bob.React(got.ID, "👍"); err != nil {
			t.Fatal(err)
		}
		ar.waitFor(t, "reaction", func(e client.Event) bool {
			x, ok := e.(*client.Reaction)
			return ok && x.Target == got.ID && x.K == "👍" && x.From == "bob"
		})
		if err := bob.Mark(got.CV, "read", got.Seq); err != nil {
			t.Fatal(err)
		}
		ar.waitFor(t, "read marker", func(e client.Event) bool {
			x, ok := e.(*client.Mark)
			return ok && x.From == "bob" && x.K == "read" && x.Upto == got.Seq && x.CV == got.CV
		})
		if _, err := alice.Edit("not-an-id", "x"); !errors.Is(err, client.ErrBadID) {
			t.Fatalf("edit of a bad id: %v", err)
		}
	}
}

// TestErrorsAndRefusals: a refused message is an *Error naming its cmid
// and leaves the outbox; a refused RPC is an *RPCError with its code; bad
// credentials end Run with ErrRefused instead of retrying for ever.
func TestErrorsAndRefusals(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	addr := b.Addr(broker.ListenerMQTT)
	alice, ar := start(t, client.Options{Addr: addr, UID: "alice", DID: "p1"})
	cmid := alice.Send("nobody", "hello?")
	e := ar.waitFor(t, "err event", func(e client.Event) bool { _, ok := e.(*client.Error); return ok }).(*client.Error)
	if e.CMID != cmid || e.Code != 404 {
		t.Fatalf("err event %+v, want cmid %s code 404", e, cmid)
	}
	if n := alice.Outbox(); n != 0 {
		t.Fatalf("refused message still in the outbox (%d)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	var rerr *client.RPCError
	if err := alice.Call(ctx, "history", map[string]any{"cv": "g:nosuch"}, nil); !errors.As(err, &rerr) || rerr.Code < 400 || rerr.Op != "history" {
		t.Fatalf("history of an unknown group: %v", err)
	}
	bad, err := client.New(client.Options{Addr: addr, UID: "alice", DID: "p2", Secret: "wrong-password"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Run(ctx); !errors.Is(err, client.ErrRefused) {
		t.Fatalf("bad password: Run = %v, want ErrRefused", err)
	}
	if _, err := client.New(client.Options{Addr: addr, UID: "Alice!", DID: "p1"}); err == nil {
		t.Fatal("bad uid accepted")
	}
	idle, err := client.New(client.Options{Addr: addr, UID: "alice", DID: "p3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Call(ctx, "conv.list", nil, nil); !errors.Is(err, client.ErrOffline) {
		t.Fatalf("call while offline: %v", err)
	}
}

// TestResumeFromCursor: a device that stops and starts again with the
// cursor it persisted gets exactly what it missed, in order.
func TestResumeFromCursor(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	addr := b.Addr(broker.ListenerMQTT)
	alice, _ := start(t, client.Options{Addr: addr, UID: "alice", DID: "p1"})

	got1 := make(chan struct{}, 1)
	bob, err := client.New(client.Options{Addr: addr, UID: "bob", DID: "p1", Secret: pw, OnEvent: func(e client.Event) {
		if isMsg("before")(e) {
			got1 <- struct{}{}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bob.Run(ctx) }()
	waitOnline(t, bob, done)
	alice.Send("bob", "before")
	fctx, fcancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer fcancel()
	if err := alice.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got1:
	case <-time.After(brokertest.Timeout):
		t.Fatal("bob did not get the first message")
	}
	cancel()
	<-done
	cursor := bob.Cursor()
	if cursor == 0 {
		t.Fatal("bob applied nothing")
	}
	for _, s := range []string{"m1", "m2", "m3"} {
		alice.Send("bob", s)
	}
	if err := alice.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	_, br := start(t, client.Options{Addr: addr, UID: "bob", DID: "p1", Since: cursor})
	br.waitFor(t, "m3", isMsg("m3"))
	var got []string
	last := cursor
	for _, m := range br.messages() {
		got = append(got, m.B)
		if m.US != last+1 {
			t.Fatalf("us %d after %d", m.US, last)
		}
		last = m.US
	}
	if len(got) != 3 || got[0] != "m1" || got[2] != "m3" {
		t.Fatalf("resumed with %v, want [m1 m2 m3]", got)
	}
}

// cuttable dials the broker and can sever the live connection.
type cuttable struct {
	addr string
	mu   sync.Mutex
	c    *cutConn
	n    int
}

// cutConn makes a local cut look like the peer went away: paho takes
// "use of closed network connection" for its own doing and would wait for
// the keepalive to notice.
type cutConn struct {
	net.Conn
	isCut atomic.Bool
}

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.isCut.Load() {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (d *cuttable) dial() (net.Conn, error) {
	c, err := net.Dial("tcp", d.addr)
	if err != nil {
		return nil, err
	}
	cc := &cutConn{Conn: c}
	d.mu.Lock()
	d.c = cc
	d.n++
	d.mu.Unlock()
	return cc, nil
}

func (d *cuttable) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.c != nil {
		d.c.isCut.Store(true)
		d.c.Close()
	}
}

func (d *cuttable) dials() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// TestReconnectKeepsOutbox: messages sent while the link is down are
// published after the reconnect, and what the receiver missed while cut
// off arrives through sync; typing and presence are delivered as events.
func TestReconnectKeepsOutbox(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	addr := b.Addr(broker.ListenerMQTT)
	ad := &cuttable{addr: addr}
	bd := &cuttable{addr: addr}
	alice, ar := start(t, client.Options{Dial: ad.dial, UID: "alice", DID: "p1", Typing: true})
	bob, br := start(t, client.Options{Dial: bd.dial, UID: "bob", DID: "p1", Typing: true})
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	// Contacts see each other's presence changes on …/eph.
	if err := alice.Call(ctx, "contacts.add", map[string]string{"uid": "bob"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.Call(ctx, "contacts.add", map[string]string{"uid": "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetPresence("away", "lunch"); err != nil {
		t.Fatal(err)
	}
	ar.waitFor(t, "bob away", func(e client.Event) bool {
		p, ok := e.(*client.Presence)
		return ok && p.UID == "bob" && p.S == "away" && p.TX == "lunch"
	})
	if err := bob.Typing("d:alice:bob", "c"); err != nil {
		t.Fatal(err)
	}
	ar.waitFor(t, "typing", func(e client.Event) bool {
		x, ok := e.(*client.Typing)
		return ok && x.From == "bob" && x.CV == "d:alice:bob" && x.S == "c"
	})

	bd.cut()
	ad.cut()
	for i := range 5 {
		alice.Send("bob", "while cut "+string(rune('a'+i)))
	}
	br.waitFor(t, "the last message", isMsg("while cut e"))
	if err := alice.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ad.dials() < 2 || bd.dials() < 2 || alice.Stats().Reconnects == 0 {
		t.Fatalf("no reconnect: dials %d/%d, stats %+v", ad.dials(), bd.dials(), alice.Stats())
	}
	var got []string
	for _, m := range br.messages() {
		got = append(got, m.B)
	}
	if len(got) != 5 || got[0] != "while cut a" || got[4] != "while cut e" {
		t.Fatalf("bob got %q", got)
	}
}

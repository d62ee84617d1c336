package cluster_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// fastPresence: a short grace and coalescing window and a quick node
// timeout, so that the tests wait seconds, not tens of them.
func fastPresence(_ int, cfg *config.Config) {
	cfg.Presence.Grace = 300 * time.Millisecond
	cfg.Presence.Coalesce = 100 * time.Millisecond
	cfg.Cluster.Heartbeat = 250 * time.Millisecond
	cfg.Cluster.NodeTimeout = 3 * time.Second
}

// presWatch is a real client subscribed to im/p/{uid} on one node.
type presWatch struct {
	t    testing.TB
	name string
	ch   chan im.Presence
	mu   sync.Mutex
	last uint64 // pv of the last presence seen
	all  []im.Presence
}

// watchPres subscribes a new device of watcher (who must be allowed to
// read uid's presence) to im/p/{uid} at url.
func watchPres(t testing.TB, url, watcher, did, uid string) *presWatch {
	t.Helper()
	w := &presWatch{t: t, name: fmt.Sprintf("%s.%s at %s", watcher, did, url), ch: make(chan im.Presence, 100)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(watcher + "." + did).
		SetUsername(watcher).SetPassword(pw).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(brokertest.Timeout).SetOrderMatters(true)
	c := paho.NewClient(o)
	brokertest.Wait(t, c.Connect(), "connect "+w.name)
	t.Cleanup(func() { brokertest.Disconnect(t, c) })
	if code := brokertest.Subscribe(t, c, topics.Presence(uid), 1, func(_ paho.Client, m paho.Message) {
		var p im.Presence
		if err := json.Unmarshal(m.Payload(), &p); err != nil {
			t.Errorf("%s: bad presence %q: %v", w.name, m.Payload(), err)
			return
		}
		w.mu.Lock()
		if p.PV <= w.last {
			t.Errorf("%s: pv %d after %d", w.name, p.PV, w.last)
		}
		w.last = p.PV
		w.all = append(w.all, p)
		w.mu.Unlock()
		select {
		case w.ch <- p:
		default:
		}
	}); code > 1 {
		t.Fatalf("%s: subscription refused (%#x)", w.name, code)
	}
	return w
}

// until waits for a presence with status s and device count d.
func (w *presWatch) until(s string, d int, within time.Duration) im.Presence {
	w.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case p := <-w.ch:
			if p.S == s && p.D == d {
				return p
			}
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			w.t.Fatalf("%s: no presence %s with d=%d within %v; saw %+v", w.name, s, d, within, w.all)
			return im.Presence{}
		}
	}
}

// seen returns every presence the watcher got.
func (w *presWatch) seen() []im.Presence {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.all)
}

// device connects uid.did at url with the presence will of PROTOCOL §3
// ({"s":"off"} on its …/pres); lost is closed when the server ends the
// connection.
func device(t testing.TB, url, uid, did string) (c paho.Client, lost <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{})
	o := paho.NewClientOptions().AddBroker(url).SetClientID(uid+"."+did).
		SetUsername(uid).SetPassword(pw).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(brokertest.Timeout).
		SetWill(topics.Up(uid, did, topics.UpPres), `{"s":"off"}`, 1, false).
		SetConnectionLostHandler(func(paho.Client, error) { close(ch) })
	c = paho.NewClient(o)
	brokertest.Wait(t, c.Connect(), "connect "+uid+"."+did)
	t.Cleanup(func() { brokertest.Disconnect(t, c) })
	return c, ch
}

// presenceUsers adds alice and bob, bob's roster holding alice, so that
// bob may read alice's presence.
func presenceUsers(t testing.TB, b *brokertest.Broker) {
	t.Helper()
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	if err := b.IM().SetContact("bob", "alice", true); err != nil {
		t.Fatal(err)
	}
}

// TestPresenceAcrossNodes: alice's device on node 1 is seen by
// subscribers on nodes 2 and 3: on; off when it disconnects; on again;
// off again, through its will, when its connection dies (cut under it).
func TestPresenceAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3, fastPresence)
	presenceUsers(t, nodes[0])
	w2 := watchPres(t, nodes[1].URL(), "bob", "w2", "alice")
	w3 := watchPres(t, nodes[2].URL(), "bob", "w3", "alice")

	a, _ := device(t, nodes[0].URL(), "alice", "p1")
	for _, w := range []*presWatch{w2, w3} {
		w.until("on", 1, brokertest.Timeout)
	}
	a.Disconnect(50)
	for _, w := range []*presWatch{w2, w3} {
		w.until("off", 0, brokertest.Timeout)
	}

	p := nodes[0].Proxy()
	device(t, p.URL(), "alice", "p1")
	for _, w := range []*presWatch{w2, w3} {
		w.until("on", 1, brokertest.Timeout)
	}
	p.Cut() // the connection dies: the will says off
	for _, w := range []*presWatch{w2, w3} {
		w.until("off", 0, brokertest.Timeout)
	}
	// Both watchers saw the same records (the same pv for each).
	if a, b := w2.seen(), w3.seen(); !slices.Equal(a[len(a)-3:], b[len(b)-3:]) {
		t.Fatalf("nodes 2 and 3 disagree:\n%+v\n%+v", a, b)
	}
}

// TestPresenceTwoNodes: alice has a device on node 1 and one on node 2:
// d=2; she stays on while either is connected; a device taken over on
// another node keeps her on (its old node's late disconnect and will
// change nothing); she goes off only when both devices are gone.
func TestPresenceTwoNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3, fastPresence)
	presenceUsers(t, nodes[0])
	w := watchPres(t, nodes[2].URL(), "bob", "w3", "alice")

	p1, _ := device(t, nodes[0].URL(), "alice", "p1")
	w.until("on", 1, brokertest.Timeout)
	_, lost := device(t, nodes[1].URL(), "alice", "p2")
	w.until("on", 2, brokertest.Timeout)
	p1.Disconnect(50)
	w.until("on", 1, brokertest.Timeout)

	// p2 moves to node 3: node 2 ends its old connection (whose will
	// fires there, late); alice stays on with one device.
	p2, _ := device(t, nodes[2].URL(), "alice", "p2")
	select {
	case <-lost:
	case <-time.After(brokertest.Timeout):
		t.Fatal("the old connection on node 2 was not ended")
	}
	// Nothing says off: p1 coming back makes two devices.
	p1, _ = device(t, nodes[0].URL(), "alice", "p1")
	w.until("on", 2, brokertest.Timeout)
	for _, p := range w.seen() {
		if p.S == "off" {
			t.Fatalf("alice went off while a device was connected: %+v", w.seen())
		}
	}
	p1.Disconnect(50)
	w.until("on", 1, brokertest.Timeout)
	p2.Disconnect(50)
	w.until("off", 0, brokertest.Timeout)
}

// TestPresenceNodeKilled: node 1 is a real process holding alice's only
// device; after kill -9 of it, subscribers on the surviving nodes see her
// off within a bounded time (node timeout, leader elections, grace).
func TestPresenceNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster node process")
	}
	t.Parallel()
	cmd, url1, nodes := procCluster(t, fastPresence)
	presenceUsers(t, nodes[0])
	w2 := watchPres(t, nodes[0].URL(), "bob", "w2", "alice")
	w3 := watchPres(t, nodes[1].URL(), "bob", "w3", "alice")
	device(t, url1, "alice", "p1")
	for _, w := range []*presWatch{w2, w3} {
		w.until("on", 1, brokertest.Timeout)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The node timeout (3 s), a leader election where node 1 led
	// (up to 9 s), the grace (0.3 s), with room for a loaded machine.
	const bound = 30 * time.Second
	for _, w := range []*presWatch{w2, w3} {
		w.until("off", 0, bound)
	}
	t.Logf("alice off on both survivors %v after the kill", time.Since(killed).Round(time.Millisecond))
}

// TestPresenceNodeRestart: a node that restarts does not mark users who
// are online on other nodes off: a watcher on another node sees nothing
// new, and one on the restarted node gets alice on.
func TestPresenceNodeRestart(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3, fastPresence)
	presenceUsers(t, nodes[0])
	w2 := watchPres(t, nodes[1].URL(), "bob", "w2", "alice")
	device(t, nodes[0].URL(), "alice", "p1")
	on := w2.until("on", 1, brokertest.Timeout)

	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	again := brokertest.StartNodes(t, []*config.Config{nodes[2].Config})[0]
	w3 := watchPres(t, again.URL(), "bob", "w3", "alice")
	if p := w3.until("on", 1, brokertest.Timeout); p.PV != on.PV {
		t.Fatalf("restarted node retains %+v, want %+v", p, on)
	}
	// After the restarted node's sweep of stale connections nothing
	// changed: a device there sees the same.
	select {
	case <-again.PresenceSettled():
	case <-time.After(brokertest.Timeout):
		t.Fatal("the restarted node did not settle")
	}
	w3b := watchPres(t, again.URL(), "bob", "w3b", "alice")
	if p := w3b.until("on", 1, brokertest.Timeout); p.PV != on.PV {
		t.Fatalf("after settling the restarted node retains %+v, want %+v", p, on)
	}
	if got := w2.seen(); len(got) != 1 {
		t.Fatalf("node 2's watcher saw changes during the restart: %+v", got)
	}
}

// TestServerInfoAcrossNodes: im/sys/server is the same record on every
// node, and hello reports its epoch; after a node restarts every node
// carries the new record, with a greater epoch.
func TestServerInfoAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	nodes[0].AddUser("alice", pw)
	type info struct {
		Epoch uint64 `json:"epoch"`
		V     string `json:"v"`
		TS    int64  `json:"ts"`
	}
	// current follows each node's im/sys/server (retained, then every
	// change) until all carry the same record, newer than epoch newer.
	current := func(bs []*brokertest.Broker, newer uint64) info {
		t.Helper()
		var mu sync.Mutex
		got := make([]info, len(bs))
		changed := make(chan struct{}, 1)
		for i, b := range bs {
			stop, err := b.Watch(topics.SysServer, func(_ string, p []byte) {
				var in info
				if err := json.Unmarshal(p, &in); err != nil {
					t.Errorf("im/sys/server %q: %v", p, err)
					return
				}
				mu.Lock()
				got[i] = in
				mu.Unlock()
				select {
				case changed <- struct{}{}:
				default:
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
		}
		deadline := time.After(brokertest.Timeout)
		for {
			mu.Lock()
			same := got[0].Epoch > newer
			for _, in := range got {
				same = same && in == got[0]
			}
			first, all := got[0], slices.Clone(got)
			mu.Unlock()
			if same {
				return first
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("im/sys/server differs between nodes (or is not newer than epoch %d): %+v", newer, all)
			}
		}
	}
	first := current(nodes, 0)
	if first.V != broker.Version || first.TS == 0 {
		t.Fatalf("record %+v", first)
	}
	hello := func(b *brokertest.Broker, did string) uint64 {
		var r struct {
			Epoch uint64 `json:"epoch"`
		}
		on(t, b, "alice", did).ok("hello", map[string]any{}, &r)
		return r.Epoch
	}
	for i, b := range nodes {
		if e := hello(b, fmt.Sprint("h", i)); e != first.Epoch {
			t.Fatalf("hello on node %d: epoch %d, want %d", i+1, e, first.Epoch)
		}
	}
	if err := nodes[1].Close(); err != nil {
		t.Fatal(err)
	}
	again := brokertest.StartNodes(t, []*config.Config{nodes[1].Config})[0]
	second := current([]*brokertest.Broker{nodes[0], again, nodes[2]}, first.Epoch)
	if e := hello(nodes[2], "h9"); e != second.Epoch {
		t.Fatalf("hello on node 3 after node 2 restarted: epoch %d, want %d", e, second.Epoch)
	}
}

// TestPresencePartition: node 1, holding alice's device, is cut off from
// the other two. They take it as gone and alice off; once the cut heals,
// node 1 records its devices again and a watcher on node 2 sees her on.
func TestPresencePartition(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out leader elections")
	}
	t.Parallel()
	nodes, cut := partitionable(t, fastPresence)
	presenceUsers(t, nodes[0])
	w := watchPres(t, nodes[1].URL(), "bob", "w2", "alice")
	device(t, nodes[0].URL(), "alice", "p1")
	w.until("on", 1, brokertest.Timeout)

	cut(true)
	w.until("off", 0, 60*time.Second)
	cut(false)
	w.until("on", 1, 60*time.Second)
}

package cluster_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/topics"
)

// cutter is a TCP relay on loopback that a test can cut (every
// connection closed, new ones refused) and heal.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newCutter(t testing.TB, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(func() {
		c.ln.Close()
		c.setCut(true)
		c.wg.Wait()
	})
	return c
}

func (c *cutter) addr() string { return c.ln.Addr().String() }

func (c *cutter) accept() {
	defer c.wg.Done()
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", c.target, time.Second)
		c.mu.Lock()
		if err != nil || c.cut {
			c.mu.Unlock()
			in.Close()
			if out != nil {
				out.Close()
			}
			continue
		}
		c.conns[in], c.conns[out] = struct{}{}, struct{}{}
		c.mu.Unlock()
		c.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer c.wg.Done()
			_, _ = io.Copy(dst, src) // ends when either side closes
			dst.Close()
			src.Close()
			c.mu.Lock()
			delete(c.conns, dst)
			delete(c.conns, src)
			c.mu.Unlock()
		}
		go pipe(out, in)
		go pipe(in, out)
	}
}

// setCut cuts (closing every relayed connection) or heals the relay.
func (c *cutter) setCut(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = on
	if on {
		for conn := range c.conns {
			conn.Close()
		}
	}
}

// TestPartition: node 1 is cut off from the other two (every route goes
// through a relay the test cuts). Node 1 cannot acknowledge a write it
// cannot replicate (its device gets an err event, nothing is stored);
// the two others go on. After the cut heals, the device's resend is
// stored once and every stream is whole and gap-free on every node.
func TestPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out leader elections")
	}
	t.Parallel()
	nodes, cut := partitionable(t)
	nodes[0].AddUser("alice", pw)
	nodes[0].AddUser("bob", pw)
	a := on(t, nodes[0], "alice", "p1")
	b := on(t, nodes[1], "bob", "p1")
	a.text("bob", "c0", "before")
	for _, d := range []*dev{a, b} {
		if ev := d.next(); ev.B != "before" {
			t.Fatalf("%+v", ev)
		}
	}

	cut(true)
	// send publishes a msg and waits (elections and retries take up to
	// half a minute) for its outcome: its own event back (ok) or an err
	// event for it.
	send := func(d *dev, cmid, body string) (ok bool) {
		t.Helper()
		tok := d.c.Publish(topics.Up(d.uid, d.did, topics.UpMsg), 1, false,
			fmt.Appendf(nil, `{"to":%q,"cmid":%q,"b":%q}`, map[string]string{"alice": "bob", "bob": "alice"}[d.uid], cmid, body))
		if !tok.WaitTimeout(90*time.Second) || tok.Error() != nil {
			t.Errorf("%s: publish %s: %v", d.uid, cmid, tok.Error())
			return false
		}
		deadline := time.After(90 * time.Second)
		for {
			select {
			case p := <-d.rpc:
				var r reply
				if err := json.Unmarshal(p, &r); err == nil && r.T == "err" && r.CMID == cmid {
					t.Logf("%s: %s refused with %d", d.uid, cmid, r.Code)
					return false
				}
			case p := <-d.in:
				var ev codec.Event
				if err := codec.Decode(p, &ev); err == nil && ev.CMID == cmid && ev.From == d.uid {
					return true
				}
			case <-deadline:
				t.Errorf("%s: no outcome for %s", d.uid, cmid)
				return false
			}
		}
	}
	var wg sync.WaitGroup
	var majority bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		majority = send(b, "c2", "from the majority") // nodes 2 and 3 go on
	}()
	if send(a, "c1", "from the cut node") {
		t.Fatal("the cut-off node acknowledged a write without an error")
	}
	wg.Wait()
	if !majority {
		t.Fatal("the majority side refused a write")
	}

	cut(false)
	for try := 0; !send(a, "c1", "from the cut node"); try++ {
		if try == 5 {
			t.Fatal("the healed node never took the resend")
		}
	}
	// Every node returns the whole stream, gap-free, once more at most a
	// few syncs after the heal: a node that was cut off answers reads from
	// its own copy until it hears a leader again (jetstore's route), and
	// that copy may still be catching up. Such a sync is a shorter stream,
	// never one with a gap; a device's next sync has the rest.
	for i, n := range nodes {
		for _, uid := range []string{"alice", "bob"} {
			d := on(t, n, uid, fmt.Sprint("s", i))
			deadline := time.Now().Add(brokertest.Timeout)
			for try := 1; ; try++ {
				evs := d.syncAll(0)
				seen := map[string]int{}
				for j, ev := range evs {
					if ev.US != uint64(j+1) || ev.Seq != uint64(j+1) {
						t.Fatalf("node %d, %s: event %d has us %d seq %d", i+1, uid, j, ev.US, ev.Seq)
					}
					seen[ev.CMID]++
				}
				if len(evs) == 3 && seen["c0"] == 1 && seen["c1"] == 1 && seen["c2"] == 1 {
					if try > 1 {
						t.Logf("node %d, %s: whole stream at sync %d", i+1, uid, try)
					}
					break
				}
				if len(evs) > 3 || time.Now().After(deadline) {
					t.Fatalf("node %d, %s's stream: %v", i+1, uid, seen)
				}
			}
		}
	}
}

// partitionable starts three nodes whose every route goes through a
// relay; cut(true) cuts node 1 off from the other two, cut(false) heals.
func partitionable(t *testing.T, opts ...func(i int, cfg *config.Config)) (nodes []*brokertest.Broker, cut func(on bool)) {
	t.Helper()
	routes := brokertest.RoutePorts(t, 3)
	relay := map[[2]int]*cutter{} // relay[{i, j}]: node i's route to node j
	cfgs := make([]*config.Config, 3)
	for i := range cfgs {
		cfgs[i] = brokertest.Config(t)
		brokertest.NodeConfig(cfgs[i], i, routes)
		cfgs[i].Cluster.NATSRoutes = nil
		for j := range 3 {
			if j != i {
				relay[[2]int{i, j}] = newCutter(t, routes[j])
				cfgs[i].Cluster.NATSRoutes = append(cfgs[i].Cluster.NATSRoutes, "nats://"+relay[[2]int{i, j}].addr())
			}
		}
		// Gossip tells the others an address that refuses: no route can
		// bypass the relays.
		cfgs[i].Cluster.NATSAdvertise = "127.0.0.1:1"
		for _, o := range opts {
			o(i, cfgs[i])
		}
	}
	nodes = brokertest.StartNodes(t, cfgs)
	return nodes, func(on bool) {
		for k, r := range relay {
			if k[0] == 0 || k[1] == 0 {
				r.setCut(on)
			}
		}
	}
}

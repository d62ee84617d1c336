package cluster_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/jetstore"
)

// TestDMAcrossNodes: three nodes, alice on node 1, bob's devices on nodes
// 2 and 3: every DM reaches both of bob's devices live and in order, and
// sync on any node returns the same stream.
func TestDMAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	nodes[0].AddUser("alice", pw)
	nodes[1].AddUser("bob", pw) // accounts are cluster-wide
	a := on(t, nodes[0], "alice", "p1")
	b2 := on(t, nodes[1], "bob", "p2")
	b3 := on(t, nodes[2], "bob", "p3")
	const n = 30
	for i := range n {
		a.text("bob", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	for _, d := range []*dev{b2, b3} {
		for i := range n {
			ev := d.next()
			if ev.T != "msg" || ev.B != fmt.Sprint("m", i) || ev.US != uint64(i+1) || ev.Seq != uint64(i+1) {
				t.Fatalf("%s.%s event %d: %+v", d.uid, d.did, i, ev)
			}
		}
	}
	key := func(evs []codec.Event) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, fmt.Sprint(ev.US, ev.ID, ev.Seq, ev.B))
		}
		return out
	}
	var want []string
	for i, b := range nodes {
		got := key(on(t, b, "bob", fmt.Sprint("s", i)).syncAll(0))
		if len(got) != n {
			t.Fatalf("sync on node %d: %d events, want %d", i+1, len(got), n)
		}
		if i == 0 {
			want = got
		} else if !slices.Equal(got, want) {
			t.Fatalf("sync on node %d differs from node 1:\n%v\n%v", i+1, got, want)
		}
	}
}

// TestGroupAcrossNodes: a group whose members are on three nodes; its
// creation and every message reach each member's device on its node, and
// a member added on one node is a member on all (their caches follow).
func TestGroupAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		nodes[0].AddUser(u, pw)
	}
	a := on(t, nodes[0], "alice", "p1")
	b := on(t, nodes[1], "bob", "p1")
	c := on(t, nodes[2], "carol", "p1")
	a.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"bob", "carol"}}, nil)
	for _, d := range []*dev{a, b, c} {
		if ev := d.next(); ev.T != "member" || ev.Op != "add" || len(ev.Who) != 3 {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	// bob (node 2) speaks first: node 2 must know the group from node 1.
	b.text("g:ops", "b1", "hi from 2")
	c.text("g:ops", "c1", "hi from 3")
	for _, d := range []*dev{a, b, c} {
		for _, want := range []string{"hi from 2", "hi from 3"} {
			if ev := d.next(); ev.T != "msg" || ev.B != want || ev.CV != "g:ops" {
				t.Fatalf("%s: got %+v, want %q", d.uid, ev, want)
			}
		}
	}
	// carol (node 3) adds dave; bob's node then fans out to dave too.
	dv := on(t, nodes[1], "dave", "p1")
	a.ok("group.role", map[string]any{"gid": "ops", "uid": "carol", "role": "admin"}, nil)
	for _, d := range []*dev{a, b, c} {
		if ev := d.next(); ev.T != "member" || ev.Op != "role" {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	c.ok("group.add", map[string]any{"gid": "ops", "uids": []string{"dave"}}, nil)
	for _, d := range []*dev{a, b, c, dv} {
		if ev := d.next(); ev.T != "member" || ev.Op != "add" {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
	b.text("g:ops", "b2", "welcome dave")
	for _, d := range []*dev{a, b, c, dv} {
		if ev := d.next(); ev.T != "msg" || ev.B != "welcome dave" {
			t.Fatalf("%s: %+v", d.uid, ev)
		}
	}
}

// TestTypingAcrossNodes: typing is relayed to a member's device on
// another node.
func TestTypingAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	nodes[0].AddUser("alice", pw)
	nodes[0].AddUser("bob", pw)
	a := on(t, nodes[0], "alice", "p1")
	b := on(t, nodes[2], "bob", "p1")
	a.text("bob", "c1", "hello")
	if ev := b.next(); ev.B != "hello" {
		t.Fatalf("%+v", ev)
	}
	a.pub("typ", []byte(`{"cv":"d:alice:bob","s":"c"}`))
	var ev codec.Event
	if err := codec.Decode(b.wait(b.eph, "typing"), &ev); err != nil || ev.T != "typ" || ev.From != "alice" || ev.S != "c" {
		t.Fatalf("typing on node 3: %+v, %v", ev, err)
	}
}

// TestTakeoverAcrossNodes: a device connecting on node 2 ends its older
// connection on node 1, and its events reach the new connection.
func TestTakeoverAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	nodes[0].AddUser("alice", pw)
	nodes[0].AddUser("bob", pw)
	lost := make(chan error, 1)
	o := paho.NewClientOptions().AddBroker(nodes[0].URL()).SetClientID("alice.p1").
		SetUsername("alice").SetPassword(pw).SetAutoReconnect(false).SetConnectTimeout(brokertest.Timeout).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	old := paho.NewClient(o)
	brokertest.Wait(t, old.Connect(), "connect alice.p1 on node 1")
	t.Cleanup(func() { brokertest.Disconnect(t, old) })

	a := on(t, nodes[1], "alice", "p1")
	select {
	case err := <-lost:
		t.Logf("node 1 connection ended: %v", err)
	case <-time.After(brokertest.Timeout):
		t.Fatal("the older connection on node 1 was not ended")
	}
	b := on(t, nodes[2], "bob", "p1")
	b.text("alice", "c1", "to the new connection")
	if ev := a.next(); ev.B != "to the new connection" {
		t.Fatalf("%+v", ev)
	}
}

// TestClusterStatus: the admin API of any node reports the three nodes
// and the log stream replicated on all of them.
func TestClusterStatus(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	st, err := nodes[2].ClusterStatus()
	if err != nil {
		t.Fatal(err)
	}
	if st.Cluster != brokertest.ClusterName || st.Node != "n3" || !slices.Equal(st.Nodes, []string{"n1", "n2", "n3"}) {
		t.Fatalf("status: %+v", st)
	}
	if len(st.Streams) != len(jetstore.Assets()) || st.Streams[0].Name != "TERN" {
		t.Fatalf("streams: %+v", st.Streams)
	}
	for _, s := range st.Streams {
		if s.Leader == "" || len(s.Replicas) != 2 {
			t.Errorf("%s: leader %q, %d replicas", s.Name, s.Leader, len(s.Replicas))
		}
	}
}

// TestWholeClusterRestart: every node stops, then all start again on the
// same data dirs: the streams, accounts and groups are all there, and
// positions continue where they were.
func TestWholeClusterRestart(t *testing.T) {
	t.Parallel()
	routes := brokertest.RoutePorts(t, 3)
	cfgs := make([]*config.Config, 3)
	for i := range cfgs {
		cfgs[i] = brokertest.Config(t)
		brokertest.NodeConfig(cfgs[i], i, routes)
	}
	nodes := brokertest.StartNodes(t, cfgs)
	nodes[0].AddUser("alice", pw)
	nodes[0].AddUser("bob", pw)
	a := on(t, nodes[0], "alice", "p1")
	a.ok("group.create", map[string]any{"gid": "ops", "members": []string{"bob"}}, nil)
	for i := range 10 {
		a.text("bob", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	brokertest.Disconnect(t, a.c)
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}()
	}
	wg.Wait()

	nodes = brokertest.StartNodes(t, cfgs)
	b := on(t, nodes[2], "bob", "p1") // the account survived
	evs := b.syncAll(0)
	if len(evs) != 11 || evs[0].T != "member" {
		t.Fatalf("bob's stream after the restart: %d events", len(evs))
	}
	for i, ev := range evs[1:] {
		if ev.B != fmt.Sprint("m", i) || ev.US != uint64(i+2) || ev.Seq != uint64(i+1) {
			t.Fatalf("event %d after the restart: %+v", i, ev)
		}
	}
	a = on(t, nodes[1], "alice", "p1")
	a.text("bob", "c0", "m0") // still deduplicated
	a.text("bob", "after", "after the restart")
	if ev := b.next(); ev.B != "after the restart" || ev.US != 12 || ev.Seq != 11 {
		t.Fatalf("after the restart: %+v", ev)
	}
	var members codec.MembersResult
	a.ok("group.members", map[string]any{"gid": "ops"}, &members)
	if len(members.Members) != 2 {
		t.Fatalf("group members after the restart: %+v", members)
	}
}

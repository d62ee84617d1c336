//go:build failover

package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
)

// trial is one failover's timings, each from the kill -9.
type trial struct {
	notice  time.Duration // the device saw its connection end
	connect time.Duration // CONNACK and SUBACK from another node
	synced  time.Duration // its sync answered, with every acknowledged event
	send    time.Duration // its first send after the kill acknowledged
	acked   int           // sends acknowledged before the kill
	resyncs int           // syncs that lacked an acknowledged event
}

// TestFailover measures issue 16's failover target over
// TERN_FAILOVER_TRIALS trials (10): a three-node cluster whose node n1 is
// a real process; before each trial every JetStream asset's leader is
// moved onto n1 (the worst case: the stream and every bucket lose their
// leader), a device on n1 sends QoS 1 messages to bob (live on n3), n1
// gets kill -9, the device reconnects at once to n2 or n3, syncs and
// sends again; n1 is restarted on its data dir before the next trial.
// "Back and synced" is the device connected to another node with its
// sync answered and holding every acknowledged event (it syncs again
// until one does; the trials where the first did not are counted); the
// first send after the kill waits for a new stream leader
// and is reported separately. At the end every acknowledged event is in
// alice's and bob's streams exactly once, us and seq gap-free, on all
// three nodes. Run by scripts/failover.sh.
func TestFailover(t *testing.T) {
	trials := 10
	if v := os.Getenv("TERN_FAILOVER_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			t.Fatalf("TERN_FAILOVER_TRIALS=%q: want 1..50", v)
		}
		trials = n
	}
	routes := brokertest.RoutePorts(t, 3)
	clients := brokertest.RoutePorts(t, 2)
	dir1 := t.TempDir()
	cmd, addr := startNodeIn(t, dir1, 0, routes)
	cfgs := []*config.Config{brokertest.Config(t), brokertest.Config(t)}
	for i, cfg := range cfgs {
		brokertest.NodeConfig(cfg, i+1, routes)
		cfg.Cluster.NATSClient = clients[i]
	}
	nodes := brokertest.StartNodes(t, cfgs)
	url1 := nodeURL(t, addr)
	nc, err := nats.Connect("nats://"+clients[0], nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	nodes[0].AddUser("alice", pw)
	nodes[0].AddUser("bob", pw)
	on(t, nodes[1], "bob", "b3")

	var all []string // every acknowledged cmid, in order
	var base uint64  // alice's stream position the device has synced to
	var res []trial
	for k := range trials {
		leadAll(t, js, "n1")
		tr, acked := failover(t, k, url1, nodes[k%2], cmd, base)
		all = append(all, acked...)
		base = tr.syncedTo
		res = append(res, tr.trial)
		t.Logf("trial %d: %d acked; notice %v, connect %v, back and synced %v (%d incomplete syncs first), first send %v",
			k+1, tr.acked, ms(tr.notice), ms(tr.connect), ms(tr.synced), tr.resyncs, ms(tr.send))
		cmd, addr = startNodeIn(t, dir1, 0, routes)
		url1 = nodeURL(t, addr)
	}
	leadAll(t, js, "n1") // n1 has caught up: check it too
	check := []string{url1, nodes[0].URL(), nodes[1].URL()}
	for i, url := range check {
		for _, uid := range []string{"alice", "bob"} {
			evs := dial(t, url, uid, fmt.Sprint("chk", i)).syncAll(0)
			seen := map[string]int{}
			for j, ev := range evs {
				if ev.US != uint64(j+1) || ev.Seq != uint64(j+1) {
					t.Fatalf("node n%d, %s: event %d has us %d seq %d", i+1, uid, j, ev.US, ev.Seq)
				}
				seen[ev.CMID]++
			}
			for _, c := range all {
				if seen[c] != 1 {
					t.Fatalf("node n%d, %s: acknowledged %s present %d times", i+1, uid, c, seen[c])
				}
			}
		}
	}
	incomplete := 0
	for _, r := range res {
		if r.resyncs > 0 {
			incomplete++
		}
	}
	t.Logf("%d trials, %d acknowledged sends, 0 lost, us and seq gap-free on 3 nodes; %d trials' first sync lacked an acknowledged event",
		trials, len(all), incomplete)
	for _, m := range []struct {
		name string
		f    func(trial) time.Duration
	}{
		{"notice", func(r trial) time.Duration { return r.notice }},
		{"connect", func(r trial) time.Duration { return r.connect }},
		{"back and synced", func(r trial) time.Duration { return r.synced }},
		{"first send", func(r trial) time.Duration { return r.send }},
	} {
		var d []time.Duration
		for _, r := range res {
			d = append(d, m.f(r))
		}
		slices.Sort(d)
		t.Logf("FAILOVER %-16s p50 %v  p99 %v  max %v", m.name, ms(rank(d, 0.50)), ms(rank(d, 0.99)), ms(d[len(d)-1]))
	}
}

type trialResult struct {
	trial
	syncedTo uint64
}

// failover runs trial k: the device sends on n1 (url1), n1 is killed
// after 40 to 47 acknowledged sends, and the device comes back on
// survivor and syncs from base.
func failover(t *testing.T, k int, url1 string, survivor *brokertest.Broker, cmd *exec.Cmd, base uint64) (trialResult, []string) {
	var lostOnce sync.Once
	lost := make(chan time.Time, 1)
	a := dial(t, url1, "alice", "p1", func(o *paho.ClientOptions) {
		o.SetConnectionLostHandler(func(paho.Client, error) {
			lostOnce.Do(func() { lost <- time.Now() })
		})
	})
	// Killed after 40 to 47 acknowledged sends, while the next is on its way.
	sent, killed := sendUntilKilled(t, a, fmt.Sprintf("t%d-", k), 40+rand.N(8), cmd)
	var tr trialResult
	select {
	case at := <-lost:
		tr.notice = at.Sub(killed)
	default:
		tr.notice = time.Since(killed) // the send failed first
	}
	tr.acked = len(sent)
	// An acknowledgement with an err event committed nothing (none is
	// expected before the kill).
	for len(a.rpc) > 0 {
		var r reply
		if err := json.Unmarshal(<-a.rpc, &r); err == nil && r.T == "err" {
			t.Fatalf("trial %d: err event for acknowledged send %s: code %d", k+1, r.CMID, r.Code)
		}
	}

	a2 := on(t, survivor, "alice", "p1")
	tr.connect = time.Since(killed)
	// Synced once a sync holds every acknowledged event. A replica
	// answers while the stream has no leader; it lacks an acknowledged
	// event only if the leader died between acknowledging it and its
	// followers learning of the commit: then the device syncs again
	// (as a device does on its next sync), and the new leader has it.
	for try := 0; ; try++ {
		evs := a2.syncAll(base)
		got := map[string]bool{}
		for _, ev := range evs {
			got[ev.CMID] = true
			tr.syncedTo = max(tr.syncedTo, ev.US)
		}
		missing := 0
		for _, c := range sent {
			if !got[c] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		tr.resyncs++
		t.Logf("trial %d: sync %d after the kill (%v) lacks %d of %d acknowledged events", k+1, try+1, ms(time.Since(killed)), missing, len(sent))
		if try == 100 {
			t.Fatalf("trial %d: acknowledged events still missing after 100 syncs", k+1)
		}
		<-time.After(100 * time.Millisecond) // a device's next sync, not a synchronisation
	}
	tr.synced = time.Since(killed)
	after := fmt.Sprint("after", k)
	for try := 0; ; try++ {
		a2.text("bob", after, "after the kill")
		if ev := a2.next(); ev.CMID == after {
			tr.syncedTo = ev.US
			break
		}
		if try == 20 {
			t.Fatalf("trial %d: no send accepted after the kill", k+1)
		}
	}
	tr.send = time.Since(killed)
	brokertest.Disconnect(t, a2.c)
	return tr, append(sent, after)
}

// leadAll moves the leader of every JetStream stream (the log and the
// buckets) onto node, waiting until it is current enough to take it.
func leadAll(t *testing.T, js jetstream.JetStream, node string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		names := js.StreamNames(ctx)
		var moved []string
		for name := range names.Name() {
			info, err := js.Stream(ctx, name)
			if err != nil {
				moved = append(moved, name+": "+err.Error())
				continue
			}
			ci := info.CachedInfo().Cluster
			if ci != nil && ci.Leader == node {
				continue
			}
			moved = append(moved, name)
			req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, node)
			if _, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+name, []byte(req)); err != nil {
				moved[len(moved)-1] += ": " + err.Error()
			}
		}
		err := names.Err()
		cancel()
		if len(moved) == 0 && err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaders not on %s: %s (%v)", node, strings.Join(moved, "; "), err)
		}
		// Poll: a new leader needs a moment to be elected and reported.
		<-time.After(500 * time.Millisecond)
	}
}

func nodeURL(t *testing.T, addr <-chan string) string {
	t.Helper()
	select {
	case a := <-addr:
		return "tcp://" + a
	case <-time.After(90 * time.Second):
		t.Fatal("node n1 did not start")
		return ""
	}
}

// rank is the nearest-rank percentile p of sorted d.
func rank(d []time.Duration, p float64) time.Duration {
	return d[max(int(math.Ceil(p*float64(len(d))))-1, 0)]
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

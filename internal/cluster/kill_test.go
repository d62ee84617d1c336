package cluster_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/searchproc"
)

// envNode makes the test binary run as one cluster node (see TestMain):
// "{data dir};{index};{route,route,route}".
const envNode = "TERN_TEST_CLUSTER_NODE"

func TestMain(m *testing.M) {
	if searchproc.IsWorker() {
		// The broker processes below keep their search index in a child
		// process of this binary (search.process).
		if err := searchproc.Serve(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(envNode); spec != "" {
		if err := runNode(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runNode runs node {index} of the cluster on loopback, prints
// "ADDR host:port" once it serves and runs until killed.
func runNode(spec string) error {
	f := strings.Split(spec, ";")
	if len(f) != 3 {
		return fmt.Errorf("bad %s %q", envNode, spec)
	}
	i, err := strconv.Atoi(f[1])
	if err != nil {
		return err
	}
	cfg := config.DefaultConfig()
	cfg.Data = f[0]
	cfg.MQTT.Addr = "127.0.0.1:0"
	cfg.WS.Addr, cfg.HTTP.Addr = "", ""
	cfg.AdminToken = "test-admin-token"
	cfg.Auth.Argon2Time, cfg.Auth.Argon2Memory = 1, 1<<20
	brokertest.NodeConfig(cfg, i, strings.Split(f[2], ","))
	fastPresence(i, cfg) // its heartbeats as often as the other nodes expect
	b, err := broker.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return err
	}
	if err := b.Start(); err != nil {
		return err
	}
	fmt.Printf("ADDR %s\n", b.Addr(broker.ListenerMQTT))
	select {}
}

// startNodeProc starts node i as a child process with a new data dir;
// addr yields its MQTT address once it serves.
func startNodeProc(t *testing.T, i int, routes []string) (cmd *exec.Cmd, addr <-chan string) {
	t.Helper()
	return startNodeIn(t, t.TempDir(), i, routes)
}

// startNodeIn is startNodeProc with data dir dir (a restart passes the
// dir of the node it restarts).
func startNodeIn(t *testing.T, dir string, i int, routes []string) (cmd *exec.Cmd, addr <-chan string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s;%d;%s", envNode, dir, i, strings.Join(routes, ",")))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // may be dead already
		_ = cmd.Wait()         // reaped; its exit status is the kill
	})
	ch := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				ch <- a
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	return cmd, ch
}

// procCluster starts a three-node cluster whose node 1 is a real process
// (startNodeProc) and whose nodes 2 and 3 run in the test, each of their
// configs passed through opts (with its node index, 1 or 2). It returns
// node 1's process and MQTT URL, and nodes 2 and 3.
func procCluster(t *testing.T, opts ...func(i int, cfg *config.Config)) (cmd *exec.Cmd, url1 string, nodes []*brokertest.Broker) {
	t.Helper()
	routes := brokertest.RoutePorts(t, 3)
	cmd, addr := startNodeProc(t, 0, routes)
	cfgs := []*config.Config{brokertest.Config(t), brokertest.Config(t)}
	for i, cfg := range cfgs {
		brokertest.NodeConfig(cfg, i+1, routes)
		for _, o := range opts {
			o(i+1, cfg)
		}
	}
	nodes = brokertest.StartNodes(t, cfgs)
	select {
	case a := <-addr:
		url1 = "tcp://" + a
	case <-time.After(60 * time.Second):
		t.Fatal("node 1 did not start")
	}
	return cmd, url1, nodes
}

// TestKill9Node: a three-node cluster whose node 1 is a real process. A
// device on node 1 sends QoS 1 messages to bob (live on node 3) until
// node 1 is killed with SIGKILL; the device reconnects to node 2, syncs
// and goes on. Every acknowledged message is in bob's stream exactly
// once, us and seq gap-free, on every surviving node.
func TestKill9Node(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster node process")
	}
	t.Parallel()
	cmd, url1, nodes := procCluster(t)
	nodes[0].AddUser("alice", pw)
	nodes[0].AddUser("bob", pw)
	bob := on(t, nodes[1], "bob", "b3")
	a := dial(t, url1, "alice", "p1")

	sent, killed := sendUntilKilled(t, a, "k", 100, cmd)
	// An acknowledgement with an err event committed nothing (none is
	// expected before the kill).
	failed := map[string]bool{}
	for len(a.rpc) > 0 {
		var r reply
		if err := json.Unmarshal(<-a.rpc, &r); err == nil && r.T == "err" {
			failed[r.CMID] = true
		}
	}
	if len(failed) > 0 {
		t.Errorf("err events for %d acknowledged sends before the kill: %v", len(failed), failed)
	}

	// The device comes back on node 2, syncs, and sends again (the first
	// attempts may meet the stream electing a new leader: resend).
	a2 := on(t, nodes[0], "alice", "p1")
	a2.syncAll(0)
	for try := 0; ; try++ {
		a2.text("bob", "after", "after the kill")
		ev := a2.next()
		if ev.CMID == "after" {
			break
		}
		if try == 20 {
			t.Fatalf("no send accepted after the kill: %+v", ev)
		}
	}
	t.Logf("node killed after %d acknowledged sends; its device was back on node 2, synced and sending after %v",
		len(sent), time.Since(killed).Round(time.Millisecond))

	for i, n := range nodes {
		evs := on(t, n, "bob", fmt.Sprint("s", i)).syncAll(0)
		seen := map[string]int{}
		for j, ev := range evs {
			if ev.US != uint64(j+1) || ev.Seq != uint64(j+1) {
				t.Fatalf("node %d: event %d has us %d seq %d", i+2, j, ev.US, ev.Seq)
			}
			seen[ev.CMID]++
		}
		for _, c := range sent {
			if seen[c] != 1 {
				t.Fatalf("node %d: acknowledged %s present %d times", i+2, c, seen[c])
			}
		}
		if seen["after"] != 1 {
			t.Fatalf("node %d: the send after the kill present %d times", i+2, seen["after"])
		}
	}
	// bob, live on node 3 throughout, saw the acknowledged ones in order.
	var last uint64
	for range sent {
		ev := bob.next()
		if ev.US <= last {
			t.Fatalf("bob live: us %d after %d", ev.US, last)
		}
		last = ev.US
	}
}

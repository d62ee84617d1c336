package messaging_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/searchproc"
	"github.com/tern-im/tern/topics"
)

// envBrokerDir makes the test binary run as a broker process on that data
// dir (see TestMain): the kill -9 test re-executes itself.
const envBrokerDir = "TERN_TEST_BROKER_DIR"

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
	if dir := os.Getenv(envBrokerDir); dir != "" {
		if err := runBrokerProcess(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runBrokerProcess runs a broker on 127.0.0.1:0 with users alice and bob,
// prints "ADDR host:port" and serves until killed.
func runBrokerProcess(dir string) error {
	cfg := config.DefaultConfig()
	cfg.Data = dir
	cfg.MQTT.Addr = "127.0.0.1:0"
	cfg.WS.Addr, cfg.HTTP.Addr = "", ""
	cfg.AdminToken = "test-admin-token"
	cfg.Auth.Argon2Time, cfg.Auth.Argon2Memory = 1, 1<<20
	b, err := broker.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	for _, u := range []string{"alice", "bob"} {
		if err := b.Accounts().AddUser(u, pw, false); err != nil && !errors.Is(err, accounts.ErrUserExists) {
			return err
		}
	}
	if err := b.Start(); err != nil {
		return err
	}
	fmt.Printf("ADDR %s\n", b.Addr(broker.ListenerMQTT))
	select {}
}

type proc struct {
	cmd  *exec.Cmd
	addr string
}

func startProc(t *testing.T, dir string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envBrokerDir+"="+dir)
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
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		return &proc{cmd: cmd, addr: a}
	case <-time.After(20 * time.Second):
		t.Fatal("broker process did not start")
		return nil
	}
}

func (p *proc) dial(t *testing.T, uid, did string) *dev {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + p.addr).SetClientID(uid + "." + did).
		SetUsername(uid).SetPassword(pw).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(brokertest.Timeout).
		SetWriteTimeout(2 * time.Second).SetOrderMatters(true)
	d := &dev{t: t, uid: uid, did: did, in: make(chan []byte, 20000), rpc: make(chan []byte, 1000), eph: make(chan []byte, 100)}
	d.c = paho.NewClient(o)
	brokertest.Wait(t, d.c.Connect(), "connect")
	t.Cleanup(func() { brokertest.Disconnect(t, d.c) })
	brokertest.Subscribe(t, d.c, topics.DeviceFilter(uid, did), 1, func(_ paho.Client, m paho.Message) {
		switch {
		case strings.HasSuffix(m.Topic(), "/in"):
			offer(d.in, m.Payload())
		case strings.HasSuffix(m.Topic(), "/rpc"):
			offer(d.rpc, m.Payload())
		}
	})
	return d
}

// TestKill9Durability kills a broker process with SIGKILL while a device
// is sending, restarts it on the same data and checks that every
// PUBACKed message is there exactly once and that no position is reused.
func TestKill9Durability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts broker processes")
	}
	t.Parallel()
	dir := t.TempDir()
	p := startProc(t, dir)
	a := p.dial(t, "alice", "p1")

	var mu sync.Mutex
	var acked []string
	enough := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			cmid := fmt.Sprint("k", i)
			tok := a.c.Publish(topics.Up("alice", "p1", "msg"), 1, false, fmt.Appendf(nil, `{"to":"bob","cmid":"%s","b":"n%d"}`, cmid, i))
			if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
				return // the broker is gone: this one was not acknowledged
			}
			mu.Lock()
			acked = append(acked, cmid)
			if len(acked) == 300 {
				close(enough)
			}
			mu.Unlock()
		}
	}()
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		t.Fatal("sender too slow")
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-stopped
	mu.Lock()
	n := len(acked)
	mu.Unlock()

	p2 := startProc(t, dir)
	bo := p2.dial(t, "bob", "b1")
	evs := bo.syncAll(0, 1000)
	seen := map[string]int{}
	for i, ev := range evs {
		if ev.US != uint64(i+1) || ev.Seq != uint64(i+1) {
			t.Fatalf("event %d: us %d seq %d", i, ev.US, ev.Seq)
		}
		seen[ev.CMID]++
	}
	for _, c := range acked[:n] {
		if seen[c] != 1 {
			t.Fatalf("acked %s present %d times", c, seen[c])
		}
	}
	// Positions continue after the crash, never reused.
	a2 := p2.dial(t, "alice", "p1")
	a2.text("bob", "after", "after the crash")
	if ev := bo.next(); ev.Seq != uint64(len(evs)+1) || ev.US != uint64(len(evs)+1) {
		t.Fatalf("after restart: seq %d us %d, stream had %d", ev.Seq, ev.US, len(evs))
	}
	// A resend of an acked cmid is still deduplicated.
	a2.text("bob", acked[0], "n0")
	if ev := a2.next(); ev.Seq == uint64(len(evs)+1) {
		// that was "after"; the next must be the dedupe answer
		if ev = a2.next(); ev.Seq != 1 {
			t.Fatalf("dedupe after crash answered seq %d", ev.Seq)
		}
	} else if ev.Seq != 1 {
		t.Fatalf("dedupe after crash answered seq %d", ev.Seq)
	}
	bo.none(bo.in, "duplicate")
	t.Logf("%d acked before SIGKILL, %d stored", n, len(evs))
}

// TestRestart closes the broker cleanly and reopens the same data.
func TestRestart(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a := connect(t, b, "alice", "p1")
	a.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"bob"}}, nil)
	for i := range 10 {
		a.text("bob", fmt.Sprint(i), "x")
	}
	brokertest.Disconnect(t, a.c)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := brokertest.StartConfig(t, b.Config)
	bo := connect(t, b2, "bob", "b1")
	if evs := bo.syncAll(0, 100); len(evs) != 11 {
		t.Fatalf("%d events after restart", len(evs))
	}
	// Retained group meta is republished at start.
	meta := make(chan []byte, 16)
	brokertest.Subscribe(t, bo.c, topics.GroupMeta("ops"), 1, func(_ paho.Client, m paho.Message) { offer(meta, m.Payload()) })
	if m := bo.wait(meta, "meta"); !strings.Contains(string(m), `"Ops"`) {
		t.Fatalf("meta %s", m)
	}
	a2 := connect(t, b2, "alice", "p2")
	a2.text("bob", "new", "y")
	if ev := bo.next(); ev.Seq != 11 || ev.US != 12 {
		t.Fatalf("after restart seq %d us %d", ev.Seq, ev.US)
	}
}

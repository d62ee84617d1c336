//go:build storm

package presence_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/topics"

	"github.com/tern-im/tern/internal/closedloop"
)

// rawConnect opens a bare MQTT 3.1.1 connection with the presence will
// and waits for an accepting CONNACK: thousands of these cost little more
// than their sockets.
func rawConnect(addr, uid, did, secret string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, brokertest.Timeout)
	if err != nil {
		return nil, err
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 120,
			ClientIdentifier: topics.ClientID(uid, did),
			UsernameFlag:     true, Username: []byte(uid),
			PasswordFlag: true, Password: []byte(secret),
			WillFlag: true, WillQos: 1, WillTopic: topics.Up(uid, did, topics.UpPres),
			WillPayload: []byte(`{"s":"off"}`),
		},
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	c.SetDeadline(time.Now().Add(brokertest.Timeout))
	if _, err := c.Write(buf.Bytes()); err == nil {
		_, err = io.ReadFull(c, ack[:])
	}
	if err == nil && (ack[0] != 0x20 || ack[3] != 0) {
		err = fmt.Errorf("connack % x", ack)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s.%s: %w", uid, did, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// connectAll connects device i with secrets[i] into conns[i], 64 at a time.
func connectAll(addr string, secrets []string, conns []net.Conn) (time.Duration, error) {
	t0 := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	var first atomic.Value
	for range 64 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(secrets); i = int(next.Add(1) - 1) {
				id := ident(i)
				c, err := rawConnect(addr, id.UID, id.DID, secrets[i])
				if err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return 0, err
	}
	return time.Since(t0), nil
}

// TestTCPReconnectStorm is the reconnect storm end to end: real sockets,
// token authentication, the default grace (10 s) and coalescing (2 s).
// Every device's socket is closed at once, then every device reconnects.
// It runs with -tags storm and TERN_STORM_TCP=devices (2 per user;
// scripts/storm.sh); with
// TERN_STORM_NOGRACE=1 too, grace and coalescing are off, for comparison. The devices live
// in a child process (this test binary again), so each process needs one
// file descriptor per device.
func TestTCPReconnectStorm(t *testing.T) {
	if f := os.Getenv("TERN_STORM_CLIENT"); f != "" {
		stormClient(t, f)
		return
	}
	n, _ := strconv.Atoi(os.Getenv("TERN_STORM_TCP"))
	if n < 2 {
		t.Fatal("set TERN_STORM_TCP=devices (scripts/storm.sh does)")
	}
	n &^= 1
	b := brokertest.Start(t, func(c *config.Config) {
		c.WS.Addr, c.HTTP.Addr = "", ""
		if os.Getenv("TERN_STORM_NOGRACE") != "" { // the baseline
			c.Presence.Grace, c.Presence.Coalesce = 0, 0
		}
	})
	grace, coalesce := b.Config.Presence.Grace, b.Config.Presence.Coalesce
	var pubs atomic.Int64
	stop, err := b.Watch("im/p/+", func(string, []byte) { pubs.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	lines := []string{b.Addr(broker.ListenerMQTT)}
	for i := range n {
		id := ident(i)
		if i%2 == 0 {
			b.AddUser(id.UID, "password-"+id.UID)
		}
		lines = append(lines, b.Token(id.UID, id.DID))
	}
	file := filepath.Join(t.TempDir(), "devices")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTCPReconnectStorm$")
	cmd.Env = append(os.Environ(), "TERN_STORM_CLIENT="+file)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	await := func(prefix string) string {
		t.Helper()
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				return rest
			}
		}
		t.Fatalf("device process ended before %q: %v", prefix, cmd.Wait())
		return ""
	}
	t.Logf("%d devices connected in %s", n, await("connected "))
	time.Sleep(coalesce + 500*time.Millisecond)
	before, cpu0 := pubs.Load(), closedloop.CPUTime()
	fmt.Fprintln(in, "storm")
	took := await("reconnected ")
	t.Logf("storm: %d sockets closed at once and %d devices reconnected in %s; broker CPU %v",
		n, n, took, (closedloop.CPUTime() - cpu0).Round(time.Millisecond))
	time.Sleep(grace + coalesce + time.Second)
	during := pubs.Load() - before
	t.Logf("%d presence publications for %d users during and after the storm (%d before it)",
		during, n/2, before)
	// Within the grace period a storm is invisible: at most the device
	// count of a user whose devices came back at different times changes.
	if os.Getenv("TERN_STORM_NOGRACE") == "" && during > int64(n/2) {
		t.Errorf("%d publications after a storm within the grace period, want at most %d", during, n/2)
	}
	fmt.Fprintln(in, "quit")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("device process: %v", err)
	}
}

// stormClient is the device side of TestTCPReconnectStorm.
func stormClient(t *testing.T, file string) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	addr, secrets := lines[0], lines[1:]
	conns := make([]net.Conn, len(secrets))
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	defer closeAll()
	took, err := connectAll(addr, secrets, conns)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("connected %v\n", took)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "storm":
			t0 := time.Now()
			closeAll()
			if _, err := connectAll(addr, secrets, conns); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("reconnected %v\n", time.Since(t0))
		case "quit":
			return
		}
	}
}

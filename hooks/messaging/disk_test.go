package messaging_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/disk"
	"github.com/tern-im/tern/topics"
)

// mountTmpfs mounts a tmpfs of size bytes under a temp dir. It needs root
// (CI runs as root): under CI=true a failure fails the test, elsewhere it
// skips, saying why.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs (CI runs as root and must run this test): %v", err)
		}
		t.Skipf("mount tmpfs needs root: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFull fills a small tmpfs under a running broker: below the reserve
// an upstream msg gets PUBACK 0x97 and err 507 on …/rpc, a writing RPC
// answers 507, /readyz is not ready and names the disk, nothing is stored,
// and the broker keeps running; once the filler is deleted it recovers by
// itself and the message acknowledged before is still there. On the old
// code Badger wrote into the full tmpfs (SIGBUS in its mmapped files, or
// a 500) and /readyz stayed ready.
func TestDiskFull(t *testing.T) {
	fs := mountTmpfs(t, "64m")
	b := brokertest.Start(t, func(c *config.Config) {
		c.Data = filepath.Join(fs, "data")
		c.Store.MemTableSize = 1 << 20
		c.Store.BlockCache = 1 << 20
		c.Store.MinFree = 24 << 20 // the smaller of 24 MiB and 50 % of 64 MiB
		c.Store.MinFreePercent = 50
		c.Store.DiskCheck = 20 * time.Millisecond
	})
	users(b, "alice", "bob")
	c, _, err := b.Dial5("alice", "p5", pw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: topics.DeviceFilter("alice", "p5"), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub := func(kind, payload string) byte {
		t.Helper()
		r, err := c.Publish(ctx, &paho5.Publish{Topic: topics.Up("alice", "p5", kind), QoS: 1, Payload: []byte(payload)})
		if err != nil && r == nil {
			t.Fatalf("publish: %v", err)
		}
		return r.ReasonCode
	}
	next := func() codec.Event {
		t.Helper()
		select {
		case p := <-c.Msgs:
			var ev codec.Event
			if err := codec.Decode(p.Payload, &ev); err != nil {
				t.Fatalf("decode %s: %v", p.Payload, err)
			}
			return ev
		case <-ctx.Done():
			t.Fatal("timed out waiting for an event")
			return codec.Event{}
		}
	}
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get(b.HTTPURL() + "/readyz")
		if err != nil {
			t.Fatalf("readyz: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("readyz: %v", err)
		}
		return resp.StatusCode, string(body)
	}
	waitReady := func(want int) string {
		t.Helper()
		for {
			code, body := readyz()
			if code == want {
				return body
			}
			select {
			case <-ctx.Done():
				t.Fatalf("readyz: still %d %q, want %d", code, body, want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	if rc := pub("msg", `{"to":"bob","cmid":"before","b":"kept"}`); rc != 0 {
		t.Fatalf("send before: reason %#x", rc)
	}
	if ev := next(); ev.T != "msg" || ev.CMID != "before" {
		t.Fatalf("want the stored event, got %+v", ev)
	}

	// Fill the tmpfs to 8 MiB free: below the 24 MiB reserve.
	free, _, err := disk.Statfs(fs)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fs, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, free-8<<20)); err != nil {
		t.Fatalf("fill: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if body := waitReady(http.StatusServiceUnavailable); !strings.Contains(body, "reserve") {
		t.Fatalf("readyz body %q does not name the disk reserve", body)
	}

	if rc := pub("msg", `{"to":"bob","cmid":"full","b":"refused"}`); rc != 0x97 {
		t.Fatalf("send when full: reason %#x, want 0x97", rc)
	}
	if ev := next(); ev.T != "err" || ev.Code != 507 || ev.CMID != "full" {
		t.Fatalf("want err 507 for cmid full, got %+v", ev)
	}
	// A writing RPC (contacts.add stores a contact) is refused too.
	if rc := pub("rpc", `{"rid":"r1","op":"contacts.add","a":{"uid":"bob"}}`); rc != 0x97 {
		t.Fatalf("contacts.add when full: reason %#x, want 0x97", rc)
	}
	select {
	case p := <-c.Msgs:
		var r reply
		if err := json.Unmarshal(p.Payload, &r); err != nil || r.RID != "r1" || r.OK || r.Err == nil || r.Err.Code != 507 {
			t.Fatalf("contacts.add when full: want err 507, got %s (%v)", p.Payload, err)
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the contacts.add reply")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitReady(http.StatusOK)
	if rc := pub("msg", `{"to":"bob","cmid":"after","b":"stored"}`); rc != 0 {
		t.Fatalf("send after recovery: reason %#x", rc)
	}
	if ev := next(); ev.T != "msg" || ev.CMID != "after" {
		t.Fatalf("want the event sent after recovery, got %+v", ev)
	}
	evs, _, err := b.Store().Stream("alice", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, ev.CMID)
	}
	if strings.Join(got, ",") != "before,after" {
		t.Fatalf("alice's stream holds %v, want [before after]: the acknowledged one kept, the refused one not stored", got)
	}
}

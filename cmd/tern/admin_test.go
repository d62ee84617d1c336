package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/adminapi"
)

// TestAdminCommands runs tern admin clients, stats, notice and kick
// against a running broker.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.Dial("alice", "p1", pw)
	cfg := writeConfig(t, "admin_token: "+b.Config.AdminToken+"\n")
	admin := func(args ...string) (string, string, error) {
		return tern(t, "", append([]string{"admin", "--server", b.HTTPURL(), "-c", cfg}, args...)...)
	}

	out, _, err := admin("clients")
	if err != nil || !strings.Contains(out, "alice.p1") || !strings.Contains(out, "mqtt/3.1.1") {
		t.Fatalf("admin clients: %q %v", out, err)
	}
	out, _, err = admin("stats")
	var st adminapi.Stats
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Connections != 1 {
		t.Fatalf("admin stats: %q %v", out, err)
	}
	if _, stderr, err := admin("notice", "back", "at", "noon"); err != nil || !strings.Contains(stderr, "im/sys/notice") {
		t.Fatalf("admin notice: %q %v", stderr, err)
	}
	if _, stderr, err := admin("kick", "alice.p1"); err != nil || !strings.Contains(stderr, "1 connection") {
		t.Fatalf("admin kick: %q %v", stderr, err)
	}
	if _, _, err := admin("kick", "alice.p1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("admin kick again: %v", err)
	}
	for _, args := range [][]string{{"kick"}, {"notice"}, {"stats", "x"}, {"frob"}} {
		if _, _, err := admin(args...); err == nil {
			t.Errorf("admin %v: no error", args)
		}
	}
	if _, stderr, err := tern(t, "", "admin", "--help"); err != nil || !strings.Contains(stderr, "Usage of admin") {
		t.Errorf("admin --help: %v %q", err, stderr)
	}
}

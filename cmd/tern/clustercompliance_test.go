package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/topics"
)

// TestComplianceCommandsOnCluster: tern hold, retention and export act on
// the cluster's store through whichever node --server names: a hold
// added through node 1 is listed through node 3, a retention set through
// node 2 reads the same through node 1, an export through any node gives
// the same file; a node's data dir is refused with a pointer to
// --server.
func TestComplianceCommandsOnCluster(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	nodes[0].AddUser("alice", pw)
	nodes[0].AddUser("bob", pw)
	c := nodes[1].Dial("alice", "p1", pw)
	for i := range 3 {
		brokertest.Wait(t, c.Publish(topics.Up("alice", "p1", topics.UpMsg), 1, false,
			fmt.Sprintf(`{"to":"bob","cmid":"c%d","b":"message %d"}`, i, i)), "send")
	}
	cfg := writeConfig(t, "admin_token: "+nodes[0].Config.AdminToken+"\n")
	on := func(i int, args ...string) string {
		t.Helper()
		out, stderr, err := tern(t, "", append(args, "--server", nodes[i].HTTPURL(), "-c", cfg)...)
		if err != nil {
			t.Fatalf("tern %v through node %d: %v %s", args, i+1, err, stderr)
		}
		return out
	}
	id := strings.TrimSpace(on(0, "hold", "add", "--cv", "d:alice:bob", "--reason", "case 7"))
	if out := on(2, "hold", "list"); !strings.Contains(out, id) || !strings.Contains(out, "case 7") {
		t.Fatalf("hold list through node 3: %q", out)
	}
	on(1, "retention", "set", "d:alice:bob", "30d")
	if out := on(0, "retention", "get", "d:alice:bob"); !strings.Contains(out, "720h0m0s") {
		t.Fatalf("retention get through node 1: %q", out)
	}
	var files []string
	for i := range nodes {
		f := filepath.Join(t.TempDir(), "export.jsonl")
		on(i, "export", "--user", "alice", "--out", f)
		p, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, string(p))
	}
	if strings.Count(files[0], "\n") != 4 || files[1] != files[0] || files[2] != files[0] {
		t.Fatalf("exports through the three nodes:\n%s\n%s\n%s", files[0], files[1], files[2])
	}
	on(2, "hold", "remove", id)
	if out := on(1, "hold", "list"); strings.Contains(out, id) {
		t.Fatalf("hold still listed through node 2: %q", out)
	}
	_, _, err := tern(t, "", "hold", "list", "--data", nodes[0].Config.Data)
	if err == nil || !strings.Contains(err.Error(), "--server") {
		t.Fatalf("hold list on a node's data dir: %v", err)
	}
}

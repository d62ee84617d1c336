package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/jetstore"
)

// TestClusterStatusCommand: tern cluster status against a node of a
// three-node cluster lists the nodes and the log stream; against a single
// node it fails with the API's 404; bad arguments are refused.
func TestClusterStatusCommand(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	cfg := writeConfig(t, "admin_token: "+nodes[0].Config.AdminToken+"\n")
	out, _, err := tern(t, "", "cluster", "status", "--server", nodes[1].HTTPURL(), "-c", cfg)
	if err != nil || !strings.Contains(out, "nodes: n1 n2 n3") || !strings.Contains(out, "TERN") || !strings.Contains(out, "KV_tern-users") {
		t.Fatalf("cluster status: %q %v", out, err)
	}
	single := brokertest.Start(t)
	if _, _, err := tern(t, "", "cluster", "status", "--server", single.HTTPURL(), "-c", cfg); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("cluster status of a single node: %v", err)
	}
	for _, args := range [][]string{{"cluster"}, {"cluster", "frob"}, {"cluster", "status", "x"}} {
		if _, _, err := tern(t, "", args...); err == nil {
			t.Errorf("tern %v: no error", args)
		}
	}
}

// TestClusterInitCommand: tern cluster init against an external NATS
// (an embedded server the test starts) creates the log stream and every
// bucket and says so; run again it creates nothing; a store opened on it
// finds them; without a URL or with bad replicas it is refused.
func TestClusterInitCommand(t *testing.T) {
	t.Parallel()
	n, err := jetstore.StartNode(jetstore.NodeOptions{Name: "ext", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	url := n.ClientURL()
	parse := func(out string) map[string]string {
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) != 4 || f[2] != "1" {
				t.Fatalf("bad line %q in\n%s", line, out)
			}
			got[f[0]] = f[3]
		}
		return got
	}
	for _, want := range []string{"created", "exists"} {
		out, _, err := tern(t, "", "cluster", "init", "--nats-url", url, "--replicas", "1")
		if err != nil {
			t.Fatalf("cluster init: %v\n%s", err, out)
		}
		got := parse(out)
		for _, a := range jetstore.Assets() {
			if got[a] != want {
				t.Fatalf("%s: %q, want %q:\n%s", a, got[a], want, out)
			}
		}
		if len(got) != len(jetstore.Assets()) {
			t.Fatalf("%d assets, want %d:\n%s", len(got), len(jetstore.Assets()), out)
		}
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), jetstore.LogStream)
	if err != nil || !st.CachedInfo().Config.AllowAtomicPublish || st.CachedInfo().Config.Replicas != 1 {
		t.Fatalf("log stream: %v", err)
	}
	for _, args := range [][]string{
		{"cluster", "init"},
		{"cluster", "init", "--nats-url", url, "--replicas", "9"},
		{"cluster", "init", "--nats-url", "nats://127.0.0.1:1", "--replicas", "1"},
	} {
		if _, _, err := tern(t, "", args...); err == nil {
			t.Errorf("tern %v: no error", args)
		}
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
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

package cluster_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/adminapi"
)

// TestAdminViewsAcrossNodes: any node lists the clients of every node,
// each with its node, and every node's stats; a single node's own views
// name no node and its cluster views answer 404.
func TestAdminViewsAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	nodes[0].AddUser("alice", pw)
	on(t, nodes[0], "alice", "p1")
	on(t, nodes[1], "alice", "p2")
	api := adminapi.NewClient(nodes[2].HTTPURL(), nodes[2].Config.AdminToken)

	cs, err := api.ClusterClients(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Node+" "+c.ClientID)
	}
	slices.Sort(got)
	if want := []string{"n1 alice.p1", "n2 alice.p2"}; !slices.Equal(got, want) {
		t.Fatalf("cluster clients %v, want %v", got, want)
	}
	sts, err := api.ClusterStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	conns := 0
	for _, st := range sts {
		names = append(names, st.Node)
		conns += st.Connections
	}
	if !slices.Equal(names, []string{"n1", "n2", "n3"}) || conns != 2 {
		t.Fatalf("cluster stats: nodes %v, %d connections: %+v", names, conns, sts)
	}
	// The node's own view names it.
	if own, err := api.Clients(t.Context()); err != nil || len(own) != 0 {
		t.Fatalf("node 3's own clients: %+v %v", own, err)
	}
	if st, err := api.Stats(t.Context()); err != nil || st.Node != "n3" {
		t.Fatalf("node 3's stats: %+v %v", st, err)
	}

	single := brokertest.Start(t)
	sapi := adminapi.NewClient(single.HTTPURL(), single.Config.AdminToken)
	if _, err := sapi.ClusterClients(t.Context()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("cluster clients of a single node: %v", err)
	}
	if st, err := sapi.Stats(t.Context()); err != nil || st.Node != "" {
		t.Fatalf("single node's stats: %+v %v", st, err)
	}
}

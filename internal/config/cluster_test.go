package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestValidateCluster: every cluster rule names its field; the modes
// that are right pass.
func TestValidateCluster(t *testing.T) {
	t.Parallel()
	embedded := Cluster{Name: "demo", Node: "n1", NATSListen: "127.0.0.1:6222",
		NATSRoutes: []string{"nats://127.0.0.1:6223", "nats://127.0.0.1:6224"}, Replicas: 3,
		Heartbeat: time.Second, NodeTimeout: 5 * time.Second}
	tests := []struct {
		name  string
		edit  func(c *Cluster)
		field string // "" means valid
	}{
		{"single node", func(c *Cluster) { *c = DefaultConfig().Cluster }, ""},
		{"embedded", func(*Cluster) {}, ""},
		{"external", func(c *Cluster) { c.NATSListen, c.NATSRoutes, c.NATSURL = "", nil, "nats://nats1:4222" }, ""},
		{"lone R1 node", func(c *Cluster) { c.NATSRoutes, c.Replicas = nil, 1 }, ""},
		{"node without a cluster", func(c *Cluster) { c.Name = "" }, "cluster.name"},
		{"bad name", func(c *Cluster) { c.Name = "a.b" }, "cluster.name"},
		{"no node", func(c *Cluster) { c.Node = "" }, "cluster.node"},
		{"neither embedded nor external", func(c *Cluster) { c.NATSListen, c.NATSRoutes = "", nil }, "cluster.nats_listen"},
		{"both", func(c *Cluster) { c.NATSURL = "nats://x:4222" }, "cluster.nats_url"},
		{"routes with an external NATS", func(c *Cluster) { c.NATSListen, c.NATSURL = "", "nats://x:4222" }, "cluster.nats_routes"},
		{"bad route", func(c *Cluster) { c.NATSRoutes[0] = "127.0.0.1:6223" }, "cluster.nats_routes[0]"},
		{"too many replicas for the routes", func(c *Cluster) { c.NATSRoutes = c.NATSRoutes[:1] }, "cluster.replicas"},
		{"no replicas", func(c *Cluster) { c.Replicas = 0 }, "cluster.replicas"},
		{"no heartbeat", func(c *Cluster) { c.Heartbeat = 0 }, "cluster.heartbeat"},
		{"node timeout below two heartbeats", func(c *Cluster) { c.NodeTimeout = c.Heartbeat }, "cluster.node_timeout"},
	}
	t.Run("retention", func(t *testing.T) {
		t.Parallel()
		cfg := DefaultConfig()
		cfg.Cluster = embedded
		cfg.IM.Retention = time.Hour
		if err := cfg.Validate(); err != nil {
			t.Fatalf("retention in cluster mode (docs/cluster.md): %v", err)
		}
		cfg.IM.TrimEvery = 0
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "im.trim_every:") {
			t.Fatalf("trim_every 0: %v", err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.Cluster = embedded
			cfg.Cluster.NATSRoutes = slices.Clone(embedded.NATSRoutes)
			tt.edit(&cfg.Cluster)
			err := cfg.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field+":")):
				t.Fatalf("want an error naming %s, got %v", tt.field, err)
			}
		})
	}
}

// TestApplyEnvCluster: the TERN_CLUSTER, TERN_NODE and TERN_NATS_*
// variables.
func TestApplyEnvCluster(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	env := map[string]string{
		"TERN_CLUSTER": "demo", "TERN_NODE": "n2", "TERN_NATS_LISTEN": "0.0.0.0:6222",
		"TERN_NATS_ROUTES": "nats://a:6222, nats://b:6222,", "TERN_NATS_URL": "",
	}
	cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	c := cfg.Cluster
	if c.Name != "demo" || c.Node != "n2" || c.NATSListen != "0.0.0.0:6222" || c.NATSURL != "" ||
		!slices.Equal(c.NATSRoutes, []string{"nats://a:6222", "nats://b:6222"}) {
		t.Fatalf("env not applied: %+v", c)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a node configured by the environment: %v", err)
	}
}

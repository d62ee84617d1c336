package brokertest

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/internal/config"
)

// ClusterName is the name of test clusters.
const ClusterName = "test"

// RoutePorts reserves n free loopback ports for NATS route listeners
// (listened on, then released: a route listener cannot take port 0,
// since every node must know the others' addresses up front).
func RoutePorts(t testing.TB, n int) []string {
	t.Helper()
	var lns []net.Listener
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// NodeConfig makes cfg node i of a cluster whose route listeners are
// routes (from RoutePorts): node name "n{i+1}", routes to all others,
// three replicas when there are three nodes or more.
func NodeConfig(cfg *config.Config, i int, routes []string) {
	cfg.Cluster.Name = ClusterName
	cfg.Cluster.Node = fmt.Sprintf("n%d", i+1)
	cfg.Cluster.NATSListen = routes[i]
	cfg.Cluster.NATSRoutes = nil
	for j, r := range routes {
		if j != i {
			cfg.Cluster.NATSRoutes = append(cfg.Cluster.NATSRoutes, "nats://"+r)
		}
	}
	cfg.Cluster.Replicas = min(3, len(routes))
}

// StartCluster starts n nodes of one cluster on loopback, each with its
// own data dir and ports, and closes them at cleanup. The nodes start
// together: JetStream forms only once enough of them are up.
func StartCluster(t testing.TB, n int, opts ...func(i int, cfg *config.Config)) []*Broker {
	t.Helper()
	routes := RoutePorts(t, n)
	cfgs := make([]*config.Config, n)
	for i := range n {
		cfgs[i] = Config(t)
		NodeConfig(cfgs[i], i, routes)
		for _, o := range opts {
			o(i, cfgs[i])
		}
	}
	return StartNodes(t, cfgs)
}

// StartNodes starts brokers from cfgs concurrently and closes them at
// cleanup.
func StartNodes(t testing.TB, cfgs []*config.Config) []*Broker {
	t.Helper()
	out := make([]*Broker, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := broker.New(cfg, Logger(t))
			if err == nil {
				if err = b.Start(); err != nil {
					_ = b.Close() // the start error is the one to report
				}
			}
			if err != nil {
				errs[i] = fmt.Errorf("node %s: %w", cfg.Cluster.Node, err)
				return
			}
			out[i] = &Broker{Broker: b, Config: cfg, t: t}
		}()
	}
	wg.Wait()
	// Closed together: a node closed last, alone, would find no quorum
	// for its last writes (presence) and retry them until it gives up.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, b := range out {
			if b == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.Close(); err != nil {
					t.Errorf("broker.Close: %v", err)
				}
			}()
		}
		wg.Wait()
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/internal/config"
)

// serveCommand runs the broker until SIGINT/SIGTERM; a second signal
// forces exit.
type serveCommand struct {
	stderr io.Writer
	common commonFlags
	fs     *flag.FlagSet
	addrs  map[string]*string
	set    map[string]bool
	level  string
	format string
	// cluster mode (PROTOCOL §17)
	cluster, node, natsListen, natsRoutes, natsURL string
}

func (c *serveCommand) Parse(args []string) error {
	c.fs = newFlagSet("serve", c.stderr)
	c.common.register(c.fs)
	c.addrs = map[string]*string{}
	for _, name := range []string{"mqtt-addr", "ws-addr", "http-addr"} {
		c.addrs[name] = c.fs.String(name, "", "listen `address` (empty disables; env TERN_"+envName(name)+")")
	}
	c.fs.StringVar(&c.cluster, "cluster", "", "cluster `name`: run as a node of a cluster on NATS JetStream (env TERN_CLUSTER)")
	c.fs.StringVar(&c.node, "node", "", "this node's unique `name` in the cluster (env TERN_NODE)")
	c.fs.StringVar(&c.natsListen, "nats-listen", "", "embedded NATS route listener `host:port` (env TERN_NATS_LISTEN)")
	c.fs.StringVar(&c.natsRoutes, "nats-routes", "", "the other nodes' routes, `nats://host:port[,…]` (env TERN_NATS_ROUTES)")
	c.fs.StringVar(&c.natsURL, "nats-url", "", "use an existing NATS cluster at `URL` instead of an embedded server (env TERN_NATS_URL)")
	c.fs.StringVar(&c.level, "log-level", "", "log `level`: debug, info, warn, error")
	c.fs.StringVar(&c.format, "log-format", "", "log `format`: text or json")
	if _, err := parseInterleaved(c.fs, args); err != nil {
		return err
	}
	c.set = map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	return nil
}

func envName(flag string) string {
	switch flag {
	case "mqtt-addr":
		return "MQTT_ADDR"
	case "ws-addr":
		return "WS_ADDR"
	}
	return "HTTP_ADDR"
}

func (c *serveCommand) Run(ctx context.Context) error {
	cfg, err := c.common.load()
	if err != nil {
		return err
	}
	// Flags given explicitly override file and environment, even when
	// empty (an empty address disables that listener).
	if c.set["mqtt-addr"] {
		cfg.MQTT.Addr = *c.addrs["mqtt-addr"]
	}
	if c.set["ws-addr"] {
		cfg.WS.Addr = *c.addrs["ws-addr"]
	}
	if c.set["http-addr"] {
		cfg.HTTP.Addr = *c.addrs["http-addr"]
	}
	override := func(flag string, dst *string, v string) {
		if c.set[flag] {
			*dst = v
		}
	}
	override("cluster", &cfg.Cluster.Name, c.cluster)
	override("node", &cfg.Cluster.Node, c.node)
	override("nats-listen", &cfg.Cluster.NATSListen, c.natsListen)
	override("nats-url", &cfg.Cluster.NATSURL, c.natsURL)
	if c.set["nats-routes"] {
		cfg.Cluster.NATSRoutes = config.SplitList(c.natsRoutes)
	}
	if c.level != "" {
		cfg.LogLevel = c.level
	}
	if c.format != "" {
		cfg.LogFormat = c.format
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log, level := newLogger(c.stderr, cfg.LogLevel, cfg.LogFormat)
	b, err := broker.New(cfg, log)
	if err != nil {
		return err
	}
	b.SetLogLevel(level)
	go func() {
		// A second signal after shutdown began forces exit.
		<-ctx.Done()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(c.stderr, "tern: forced exit")
		os.Exit(1)
	}()
	return b.Run(ctx)
}

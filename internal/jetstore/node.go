package jetstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// MaxBatch is the largest atomic batch an embedded node accepts: a
// message to a group of 5,000 writes two messages per member plus a few.
const MaxBatch = 12_000

// NodeOptions configure an embedded NATS JetStream server.
type NodeOptions struct {
	// Name is the node's unique server name; Cluster the cluster's.
	Name, Cluster string
	// Listen is the route listener (host:port) other nodes connect to;
	// empty for a lone node.
	Listen string
	// Routes are the other nodes' route URLs (nats://host:port).
	Routes []string
	// Advertise is the route address the other nodes are told (gossip);
	// empty means Listen.
	Advertise string
	// Client, when set, is the client listener (host:port) for tools
	// such as the nats CLI; else a random loopback port. Tern itself
	// connects in-process.
	Client string
	// Dir is where JetStream keeps its files.
	Dir string
	// SyncAlways fsyncs every write before it is acknowledged.
	SyncAlways bool
	Logger     *slog.Logger
}

// Node is an embedded NATS server with JetStream.
type Node struct {
	srv *server.Server
}

// StartNode starts the server and waits until it accepts connections.
func StartNode(o NodeOptions) (*Node, error) {
	opts := &server.Options{
		ServerName: o.Name,
		JetStream:  true,
		StoreDir:   filepath.Join(o.Dir),
		NoSigs:     true,
		NoLog:      true,
		// Routing waits for the client listener, so there is always one:
		// a random loopback port unless Client names one.
		Host: "127.0.0.1",
		Port: server.RANDOM_PORT,
		JetStreamLimits: server.JSLimitOpts{
			MaxBatchSize: MaxBatch,
		},
		SyncAlways: o.SyncAlways,
	}
	if o.SyncAlways {
		opts.SyncInterval = time.Second // unused with SyncAlways, but set: 0 means the default
	}
	if o.Client != "" {
		host, port, err := splitHostPort(o.Client)
		if err != nil {
			return nil, fmt.Errorf("nats client listen %q: %w", o.Client, err)
		}
		opts.Host, opts.Port = host, port
	}
	if o.Listen != "" {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen %q: %w", o.Listen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: o.Cluster, Host: host, Port: port, Advertise: o.Advertise}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("nats route %q: not a nats://host:port URL", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(logAdapter{o.Logger}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats server: not ready after 30s")
	}
	return &Node{srv: srv}, nil
}

// Connect opens an in-process client connection to the node.
func (n *Node) Connect(name string) (*nats.Conn, error) {
	return nats.Connect("", nats.InProcessServer(n.srv), nats.Name(name), nats.MaxReconnects(-1))
}

// RouteAddr is the address the route listener got (for port 0).
func (n *Node) RouteAddr() string {
	if a := n.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Server is the embedded server.
func (n *Node) Server() *server.Server { return n.srv }

// Shutdown stops the server and waits for it.
func (n *Node) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// logAdapter sends the NATS server's log to slog, noticing at debug.
type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Noticef(f string, v ...any) { a.l.Debug("nats: " + fmt.Sprintf(f, v...)) }

// Warnf: the server's routine start and stop lines come at warn; they
// are logged at info, every other warning at warn.
func (a logAdapter) Warnf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	for _, routine := range []string{"Waiting for routing", "JetStream has not established contact", "Metalayer blocking snapshot"} {
		if strings.HasPrefix(msg, routine) {
			a.l.Info("nats: " + msg)
			return
		}
	}
	a.l.Warn("nats: " + msg)
}
func (a logAdapter) Fatalf(f string, v ...any) { a.l.Error("nats: " + fmt.Sprintf(f, v...)) }

// Errorf: mostly a peer that is not up yet or just went away, which the
// server retries by itself.
func (a logAdapter) Errorf(f string, v ...any) { a.l.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (a logAdapter) Debugf(f string, v ...any) { a.l.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (a logAdapter) Tracef(f string, v ...any) {}

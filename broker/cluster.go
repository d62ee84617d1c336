package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tern-im/tern/hooks/messaging"
	"github.com/tern-im/tern/hooks/presence"
	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/cluster"
	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/jetstore"
	"github.com/tern-im/tern/internal/relations"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// backend is what the broker needs of its store: every im port, the
// accounts, and the node's own bookkeeping. internal/store (Badger,
// single node) and internal/jetstore (JetStream, cluster) provide it.
type backend interface {
	im.Store
	accounts.Store
	Incr(name string) (uint64, error)
	Unreadable() int64
	Size() int64
	Ready() bool
	Close() error
}

// clusterParts are the pieces of cluster mode (PROTOCOL §17).
type clusterParts struct {
	node *jetstore.Node // the embedded NATS server; nil with nats_url
	nc   *nats.Conn
	js   *jetstore.Store
	link *cluster.Link
	// epoch is the cluster's epoch (im/sys/server), which a later
	// node's start raises; unwatch ends the watch of its record.
	epoch   atomic.Uint64
	unwatch func()
	pres    *presence.Hook
	// trim runs retention on the one node holding its lease.
	trim *jetstore.Trimmer

	closeOnce sync.Once
	closeErr  error
}

// openCluster starts the embedded NATS JetStream server (or connects to
// the external one) and opens the JetStream store, creating its assets
// if they are missing.
func (b *Broker) openCluster() error {
	cc := b.cfg.Cluster
	var err error
	if cc.NATSURL != "" {
		b.cl.nc, err = nats.Connect(cc.NATSURL, nats.Name("tern-"+cc.Node), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("cluster: connect %s: %w", cc.NATSURL, err)
		}
	} else {
		b.cl.node, err = jetstore.StartNode(jetstore.NodeOptions{
			Name: cc.Node, Cluster: cc.Name, Listen: cc.NATSListen, Routes: cc.NATSRoutes, Advertise: cc.NATSAdvertise,
			Client: cc.NATSClient, Dir: filepath.Join(b.cfg.Data, "nats"),
			// R3 with every write fsynced: no acknowledged loss even if
			// two machines lose power at once.
			SyncAlways: cc.Replicas > 1, Logger: b.log,
		})
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		if b.cl.nc, err = b.cl.node.Connect("tern-" + cc.Node); err != nil {
			b.cl.node.Shutdown()
			return fmt.Errorf("cluster: connect: %w", err)
		}
	}
	// A forming cluster elects its JetStream leader first.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstore.Open(ctx, b.cl.nc, jetstore.Options{
		Replicas: cc.Replicas, Commits: b.commits, Logger: b.log,
		OnCommit: b.committed,
		// The link is started before any client can cause an append.
		Relay: func(a *im.Append) { b.cl.link.Committed(a) },
	})
	if err != nil {
		_ = b.closeCluster() // the open error is the one to report
		return err
	}
	b.cl.js, b.st = js, js
	return nil
}

// startLink connects this node to the other nodes' live traffic and
// heartbeats.
func (b *Broker) startLink(rel *relations.Relations, h *messaging.Hook, pres *presence.Hook) error {
	cc := b.cfg.Cluster
	link, err := cluster.Start(cluster.Options{
		Conn: b.cl.nc, Node: cc.Node, Commits: b.commits,
		Drop:     func(uids, gids []string) { rel.Drop(uids, gids...) },
		Deleted:  rel.ForgetDeleted,
		Account:  b.accounts.Changed,
		Flush:    func() { b.accounts.Flush(); rel.Flush() },
		Announce: h.Announce, Typing: h.RelayTyping, Kick: b.Kick, Log: b.log,
		// A device's next connection here gets a greater generation
		// than its connection on another node.
		Raise:     b.sessions.Raise,
		Heartbeat: cc.Heartbeat, NodeTimeout: cc.NodeTimeout,
		// The survivors drop a dead node's connections; its users go off.
		Dead: pres.NodeGone,
		// GET /admin/v1/cluster/… on another node asks this one.
		Admin: b.adminView,
		// Presences the other nodes store are retained here at once.
		Presence: pres.Mirror,
		// Taken as gone by the others (or a partition healed): this
		// node's devices are recorded again.
		Rejoin: pres.Rejoin,
	})
	if err != nil {
		return err
	}
	b.cl.link, b.cl.pres = link, pres
	rel.OnInvalidate = link.Invalidated
	rel.OnDeleted = link.Deleted
	b.accounts.OnChange = link.AccountChanged
	// A device connecting here ends its connection on another node.
	b.sessions.OnAdd(func(s *session.Session) {
		if !s.Anonymous {
			link.Connected(s.UID, s.DID, s.Gen)
		}
	})
	return nil
}

// presenceOptions are the presence hook's options; in cluster mode
// presence is cluster-wide (the connection registry and the stored
// presences in JetStream).
func (b *Broker) presenceOptions(w presence.Watchers) *presence.Options {
	cfg := b.cfg
	o := &presence.Options{
		Server: b.mqtt, Sessions: b.sessions, Store: b.st,
		Grace: cfg.Presence.Grace, Coalesce: cfg.Presence.Coalesce, Watchers: w,
		Metrics: b.metrics,
	}
	if b.cl.js != nil {
		o.Cluster, o.Node = b.cl.js, cfg.Cluster.Node
		// The link starts after the hooks, before Alive is first asked
		// (Settle after the start).
		o.Alive = func(node string) bool { return b.cl.link.Alive(node) }
		o.First, o.Settle = b.epoch<<40, cfg.Cluster.NodeTimeout
		// The link starts after the hooks, before any client connects.
		o.Announce = func(uid string, p im.Presence) { b.cl.link.Presence(uid, p) }
	}
	return o
}

// clusterEpoch is the epoch hello reports in cluster mode (nil on a
// single node: the run's own).
func (b *Broker) clusterEpoch() func() uint64 {
	if b.cl.js == nil {
		return nil
	}
	b.cl.epoch.Store(b.epoch)
	return b.cl.epoch.Load
}

// announceServer makes this node's start the cluster's im/sys/server
// record (unless a later node's is stored) and republishes the record
// as it changes, so every node retains the same: one epoch for the
// cluster, which grows when any node starts.
func (b *Broker) announceServer() error {
	js := b.cl.js
	err := js.AnnounceServer(jetstore.ServerInfo{Epoch: b.epoch, V: Version, TS: time.Now().UnixMilli()})
	if err != nil {
		return fmt.Errorf("im/sys/server: %w", err)
	}
	stop, err := js.WatchServer(func(si jetstore.ServerInfo) {
		b.cl.epoch.Store(si.Epoch)
		p, err := json.Marshal(si)
		if err == nil {
			err = b.mqtt.Publish(topics.SysServer, p, true, 1)
		}
		if err != nil {
			b.log.Error("im/sys/server", "error", err)
		}
	})
	if err != nil {
		return fmt.Errorf("im/sys/server: %w", err)
	}
	b.cl.unwatch = stop
	return nil
}

func (b *Broker) stopServerWatch() {
	if b.cl.unwatch != nil {
		b.cl.unwatch()
		b.cl.unwatch = nil
	}
}

// PresenceSettled is closed once a cluster node has dropped the stale
// connections it found at its start (nodes not heard from, its own from
// before a restart); nil on a single node.
func (b *Broker) PresenceSettled() <-chan struct{} {
	if b.cl.pres == nil {
		return nil
	}
	return b.cl.pres.Settled()
}

// gatherWait bounds how long a cluster-wide admin view waits for the
// other nodes' answers.
const gatherWait = 2 * time.Second

// adminView is this node's answer to another node's admin request.
func (b *Broker) adminView(kind string) (any, error) {
	switch kind {
	case "clients":
		return b.Clients(), nil
	case "stats":
		return b.Stats(), nil
	}
	return nil, fmt.Errorf("unknown admin view %q", kind)
}

// ClusterClients lists the clients of every node (admin API).
func (b *Broker) ClusterClients() ([]adminapi.ClientInfo, error) {
	if b.cl.link == nil {
		return nil, adminapi.ErrNotCluster
	}
	out := b.Clients()
	others, err := b.cl.link.Gather("clients", gatherWait)
	for node, raw := range others {
		var cs []adminapi.ClientInfo
		if jerr := json.Unmarshal(raw, &cs); jerr != nil {
			err = errors.Join(err, fmt.Errorf("clients of node %s: %w", node, jerr))
			continue
		}
		out = append(out, cs...)
	}
	slices.SortFunc(out, func(a, b adminapi.ClientInfo) int { return a.Since.Compare(b.Since) })
	return out, err
}

// ClusterStats reports every node's state, by node name (admin API).
func (b *Broker) ClusterStats() ([]adminapi.Stats, error) {
	if b.cl.link == nil {
		return nil, adminapi.ErrNotCluster
	}
	out := []adminapi.Stats{b.Stats()}
	others, err := b.cl.link.Gather("stats", gatherWait)
	for node, raw := range others {
		var st adminapi.Stats
		if jerr := json.Unmarshal(raw, &st); jerr != nil {
			err = errors.Join(err, fmt.Errorf("stats of node %s: %w", node, jerr))
			continue
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b adminapi.Stats) int { return strings.Compare(a.Node, b.Node) })
	return out, err
}

// startTrimmer runs retention (im.retention and conversations' own) on
// whichever node holds the trimmer lease. What it removes leaves this
// node's file references at once and the other nodes' at their next
// file collection (their collectors find the message gone).
func (b *Broker) startTrimmer() {
	b.cl.trim = b.cl.js.StartTrimmer(jetstore.TrimmerOptions{
		Node: b.cfg.Cluster.Node, Retention: b.cfg.IM.Retention, Every: b.cfg.IM.TrimEvery,
		Forget: b.forget, Attachments: b.dropTrimmedRef, Logger: b.log,
	})
}

// ClusterStatus reports the cluster's JetStream assets (admin API).
func (b *Broker) ClusterStatus() (adminapi.ClusterStatus, error) {
	if b.cl.js == nil {
		return adminapi.ClusterStatus{}, adminapi.ErrNotCluster
	}
	streams, err := b.cl.js.Status()
	if err != nil {
		return adminapi.ClusterStatus{}, err
	}
	out := adminapi.ClusterStatus{Cluster: b.cfg.Cluster.Name, Node: b.cfg.Cluster.Node}
	seen := map[string]bool{}
	for _, st := range streams {
		as := adminapi.StreamStatus{Name: st.Name, Leader: st.Leader, Msgs: st.Msgs, Bytes: st.Bytes}
		for _, r := range st.Replicas {
			as.Replicas = append(as.Replicas, adminapi.Replica(r))
		}
		out.Streams = append(out.Streams, as)
		for _, n := range append([]string{st.Leader}, replicaNames(st)...) {
			if n != "" && !seen[n] {
				seen[n] = true
				out.Nodes = append(out.Nodes, n)
			}
		}
	}
	slices.Sort(out.Nodes)
	return out, nil
}

func replicaNames(st jetstore.StreamStatus) []string {
	var out []string
	for _, r := range st.Replicas {
		out = append(out, r.Name)
	}
	return out
}

// clusterFiles puts the file store on JetStream (docs/files.md, "Cluster
// mode"): metadata, uploads in progress and blobs are shared by every
// node; o.Dir keeps this node's copies of blobs and its thumbnails, and
// one node at a time runs the collector.
func (b *Broker) clusterFiles(o *files.Options) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	jf, err := jetstore.OpenFiles(ctx, b.cl.js, jetstore.FilesOptions{
		Dir: o.Dir, DiskLow: o.DiskLow, Log: b.log,
		// A blob a commit touched stays at most this long unused.
		Grace: min(jetstore.DefaultGrace, b.cfg.Files.UploadExpiry),
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	o.Meta, o.Content = jf.Meta(), jf
	// The holder renews its turn every sweep, well before it runs out
	// (a round that overruns its sweep keeps it); another node takes it
	// at most two sweeps after the holder stopped renewing.
	o.Turn = jf.Turn(b.cfg.Cluster.Node, 2*b.cfg.Files.Sweep)
	return nil
}

// badgerDir is where Badger lives: the data dir; in cluster mode
// {data}/local, a node-local store the shared state never goes to
// (messages, accounts, compliance and files are JetStream's).
func (b *Broker) badgerDir() string {
	if b.cfg.Cluster.Enabled() {
		return filepath.Join(b.cfg.Data, "local")
	}
	return b.cfg.Data
}

// closeCluster closes the link, the JetStream store, the connection and
// the embedded server, if there are any; it may be called again.
func (b *Broker) closeCluster() error {
	b.cl.closeOnce.Do(func() { b.cl.closeErr = b.shutCluster() })
	return b.cl.closeErr
}

func (b *Broker) shutCluster() error {
	var errs []error
	if b.cl.trim != nil {
		b.cl.trim.Stop() // hands the lease to another node
	}
	if b.cl.link != nil {
		b.cl.link.Stop()
	}
	if b.cl.js != nil {
		errs = append(errs, b.cl.js.Close())
	}
	if b.cl.nc != nil {
		// Send what the link still holds before the connection goes.
		if err := b.cl.nc.FlushTimeout(time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			b.log.Debug("cluster: flush", "error", err)
		}
		b.cl.nc.Close()
	}
	if b.cl.node != nil {
		b.cl.node.Shutdown()
	}
	return errors.Join(errs...)
}

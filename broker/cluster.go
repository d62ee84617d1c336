package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tern-im/tern/hooks/messaging"
	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/cluster"
	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/jetstore"
	"github.com/tern-im/tern/internal/relations"
	"github.com/tern-im/tern/internal/session"
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
		// b.metrics is set before any client can cause an append.
		OnCommit: func(n int) {
			b.metrics.Committed(n)
			if b.search != nil {
				b.search.Kick()
			}
		},
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

// startLink connects this node to the other nodes' live traffic.
func (b *Broker) startLink(rel *relations.Relations, h *messaging.Hook) error {
	link, err := cluster.Start(cluster.Options{
		Conn: b.cl.nc, Node: b.cfg.Cluster.Node, Commits: b.commits,
		Drop:     func(uids, gids []string) { rel.Drop(uids, gids...) },
		Deleted:  rel.ForgetDeleted,
		Account:  b.accounts.Changed,
		Flush:    func() { b.accounts.Flush(); rel.Flush() },
		Announce: h.Announce, Typing: h.RelayTyping, Kick: b.Kick, Log: b.log,
	})
	if err != nil {
		return err
	}
	b.cl.link = link
	rel.OnInvalidate = link.Invalidated
	rel.OnDeleted = link.Deleted
	b.accounts.OnChange = link.AccountChanged
	// A device connecting here ends its connection on another node.
	b.sessions.OnAdd(func(s *session.Session) {
		if !s.Anonymous {
			link.Connected(s.UID, s.DID)
		}
	})
	return nil
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

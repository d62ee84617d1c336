// Package cluster links the nodes of a Tern cluster beyond their shared
// store (internal/jetstore): every node publishes, on core NATS, what the
// other nodes must act on live, and consumes what they publish:
//
//   - committed appends (tern-cl.{node}.live): fed into the receiving
//     node's im.CommitStream, so its delivery reaches its own devices (the
//     commit stream "from other nodes"); group changes also republish the
//     group's retained meta there;
//   - cache invalidations (….inval): the users and groups whose relations
//     another node changed, accounts it deleted, and accounts whose
//     record or tokens it changed (each node caches token logins);
//   - typing (….typ): not stored, relayed to the receiving node's devices;
//   - connections (….conn): a device connected; the receiving node ends
//     its own, older connection of the same device (takeover across
//     nodes: one connection per ClientID cluster-wide) and raises its
//     generations past the new connection's;
//   - presences (….pres): a presence this node stored, retained at once
//     by the others (their store watch would bring it too, later when a
//     leader election stalls it);
//   - heartbeats (….hb): a node is alive; one not heard for the node
//     timeout is dead, and the survivors drop its connections from the
//     registry (liveness.go).
//
// Core NATS delivers at most once: a node that misses a live event (it
// was restarting, or fell behind) leaves its devices to sync, as a
// dropped MQTT delivery does on one node. Messages of one node arrive in
// the order it sent them; those of two nodes interleave.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tern-im/tern/internal/im"
)

// Subjects: tern-cl.{node}.{kind}. Outside the log stream's tern.>.
const (
	prefix   = "tern-cl."
	kindLive = "live"
	kindInv  = "inval"
	kindTyp  = "typ"
	kindConn = "conn"
	kindHB   = "hb"
	kindPres = "pres"
	kindGone = "gone"
)

// Options configure a Link.
type Options struct {
	Conn *nats.Conn
	// Node is this node's name: its own messages are skipped.
	Node string
	// Commits is this node's commit stream, which delivery consumes.
	Commits *im.CommitStream
	// Drop forgets cached relations another node changed.
	Drop func(uids []string, gids []string)
	// Deleted forgets what this node cached about an account another
	// node deleted (its DM peer answers).
	Deleted func(uid string)
	// Account forgets what this node cached about an account another
	// node changed (its token logins), and after a password change ends
	// the account's password sessions here.
	Account func(uid string, password bool)
	// Flush, if set, empties the caches the notices above keep fresh; it
	// runs every FlushEvery (0: 30 s), so a notice this node missed (core
	// NATS delivers at most once) leaves a stale entry for that long at
	// most.
	Flush      func()
	FlushEvery time.Duration
	// Announce republishes a group's retained meta.
	Announce func(g im.Group)
	// Typing relays another node's typing event to this node's devices.
	Typing func(ev *im.Event, to []string) error
	// Kick ends this node's connections of device (uid, did).
	Kick func(uid, did string) int
	// Raise makes this node's later generations greater than a
	// connection's generation on another node.
	Raise func(gen uint64)
	// Heartbeat is how often this node says it is alive; 0 sends none
	// and watches no other node.
	Heartbeat time.Duration
	// NodeTimeout is how long a node may stay silent before it is dead.
	NodeTimeout time.Duration
	// Dead is told, on its own goroutine, of a node not heard for
	// NodeTimeout (once, until it is heard again).
	Dead func(node string)
	// Rejoin, called on its own goroutine, records this node's
	// connections again: the other nodes took it as gone and dropped
	// them, or it took them as gone (a partition) and hears them again.
	Rejoin func()
	// Presence retains a presence another node stored.
	Presence func(uid string, p im.Presence)
	// Admin, when set, answers the other nodes' admin requests (kind
	// "clients" or "stats": this node's view, encoded as JSON).
	Admin func(kind string) (any, error)
	Log   *slog.Logger
}

// Link is one node's end of the cluster's live traffic.
type Link struct {
	o    Options
	sub  *nats.Subscription
	stop chan struct{}
	once sync.Once
	live liveness
	wg   sync.WaitGroup
	adm  *nats.Subscription
	// mu and stopped keep a receive from starting a goroutine once Stop
	// waits for them.
	mu      sync.Mutex
	stopped bool
}

// Start subscribes to the other nodes' traffic.
func Start(o Options) (*Link, error) {
	if o.Conn == nil || o.Commits == nil || o.Node == "" {
		return nil, errors.New("cluster: Conn, Commits and Node are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Link{o: o, stop: make(chan struct{}), live: liveness{heard: map[string]time.Time{}, gone: map[string]bool{}}}
	sub, err := o.Conn.Subscribe(prefix+"*.*", l.receive)
	if err != nil {
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	// Delivery waits (backpressure) rather than NATS dropping: allow a
	// deep buffer before the client calls this a slow consumer.
	if err := sub.SetPendingLimits(1<<16, 256<<20); err != nil {
		return nil, fmt.Errorf("cluster: pending limits: %w", err)
	}
	l.sub = sub
	if err := l.subscribeAdmin(); err != nil {
		_ = sub.Unsubscribe() // the admin error is the one to report
		return nil, err
	}
	if o.Heartbeat > 0 {
		l.wg.Add(1)
		go l.beat()
	}
	if o.Flush != nil {
		every := o.FlushEvery
		if every <= 0 {
			every = 30 * time.Second
		}
		go l.flush(every)
	}
	return l, nil
}

func (l *Link) flush(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.o.Flush()
		}
	}
}

// Stop ends the subscription; a receive waiting for room in the commit
// stream gives up.
func (l *Link) Stop() {
	l.once.Do(func() {
		l.mu.Lock()
		l.stopped = true
		l.mu.Unlock()
		close(l.stop)
		l.wg.Wait()
		for _, sub := range []*nats.Subscription{l.sub, l.adm} {
			if sub == nil {
				continue
			}
			if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				l.o.Log.Debug("cluster: unsubscribe", "error", err)
			}
		}
	})
}

// live is an append on the wire: im.Append's exported fields.
type live struct {
	A *im.Append `json:"a"`
}

type inval struct {
	Users   []string `json:"u,omitempty"`
	Groups  []string `json:"g,omitempty"`
	Deleted string   `json:"del,omitempty"`  // an account deleted
	Account string   `json:"acct,omitempty"` // an account or its tokens changed
	Pw      bool     `json:"pw,omitempty"`   // … its password
}

type conn struct {
	UID string `json:"u"`
	DID string `json:"d"`
	Gen uint64 `json:"g"`
}

type pres struct {
	UID string      `json:"u"`
	P   im.Presence `json:"p"`
}

type typing struct {
	Ev *im.Event `json:"ev"`
	To []string  `json:"to"`
}

// Committed tells the other nodes of an append this node committed.
func (l *Link) Committed(a *im.Append) { l.send(kindLive, live{A: a}) }

// Invalidated tells the other nodes of relations this node changed.
func (l *Link) Invalidated(uids []string, gids []string) {
	l.send(kindInv, inval{Users: uids, Groups: gids})
}

// Deleted tells the other nodes that the account uid was deleted here.
// It follows the invalidation of what the deletion changed, and arrives
// after it: one node's messages keep their order.
func (l *Link) Deleted(uid string) { l.send(kindInv, inval{Deleted: uid}) }

// AccountChanged tells the other nodes that the account uid or its
// tokens changed here (password: its password).
func (l *Link) AccountChanged(uid string, password bool) {
	l.send(kindInv, inval{Account: uid, Pw: password})
}

// Connected tells the other nodes that device (uid, did) connected here
// with generation gen.
func (l *Link) Connected(uid, did string, gen uint64) {
	l.send(kindConn, conn{UID: uid, DID: did, Gen: gen})
}

// Presence tells the other nodes of a presence this node stored.
func (l *Link) Presence(uid string, p im.Presence) { l.send(kindPres, pres{UID: uid, P: p}) }

// Typed relays a typing event to the other nodes.
func (l *Link) Typed(ev *im.Event, to []string) { l.send(kindTyp, typing{Ev: ev, To: to}) }

func (l *Link) send(kind string, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		err = l.o.Conn.Publish(prefix+l.o.Node+"."+kind, b)
	}
	if err != nil {
		// The connection is down: the other nodes' devices sync.
		l.o.Log.Debug("cluster: publish", "kind", kind, "error", err)
	}
}

func (l *Link) receive(m *nats.Msg) {
	rest, _ := strings.CutPrefix(m.Subject, prefix)
	node, kind, ok := strings.Cut(rest, ".")
	if !ok || node == l.o.Node {
		return
	}
	isNew, back := l.live.hear(node)
	if isNew && l.o.Heartbeat > 0 {
		// A node new to this one learns of it at once, not a heartbeat
		// later (cluster-wide admin views count the nodes they wait for).
		l.send(kindHB, struct{}{})
	}
	if back {
		l.rejoin("node " + node + " is back")
	}
	switch kind {
	case kindLive:
		var v live
		if err := json.Unmarshal(m.Data, &v); err != nil || v.A == nil || len(v.A.US) != len(v.A.To) {
			l.o.Log.Warn("cluster: bad live message", "node", node, "error", err)
			return
		}
		a := v.A
		if a.Group != nil && l.o.Announce != nil {
			l.o.Announce(*a.Group)
		}
		// Waits while this node's delivery is behind (backpressure).
		if err := l.o.Commits.Reserve(l.stop, a); err != nil {
			return
		}
		l.o.Commits.Publish(a)
	case kindInv:
		var v inval
		if err := json.Unmarshal(m.Data, &v); err != nil {
			l.o.Log.Warn("cluster: bad invalidation", "node", node, "error", err)
			return
		}
		if l.o.Drop != nil && (len(v.Users) > 0 || len(v.Groups) > 0) {
			l.o.Drop(v.Users, v.Groups)
		}
		if v.Deleted != "" && l.o.Deleted != nil {
			l.o.Deleted(v.Deleted)
		}
		if v.Account != "" && l.o.Account != nil {
			l.o.Account(v.Account, v.Pw)
		}
	case kindConn:
		var v conn
		if err := json.Unmarshal(m.Data, &v); err != nil || v.UID == "" {
			l.o.Log.Warn("cluster: bad connection notice", "node", node, "error", err)
			return
		}
		if l.o.Raise != nil {
			l.o.Raise(v.Gen)
		}
		if l.o.Kick != nil {
			if n := l.o.Kick(v.UID, v.DID); n > 0 {
				l.o.Log.Debug("cluster: taken over on another node", "user", v.UID, "device", v.DID, "node", node)
			}
		}
	case kindGone:
		var v gone
		if err := json.Unmarshal(m.Data, &v); err != nil {
			l.o.Log.Warn("cluster: bad gone notice", "node", node, "error", err)
			return
		}
		if v.Node == l.o.Node {
			l.rejoin("node " + node + " took this one as gone")
		}
	case kindPres:
		var v pres
		if err := json.Unmarshal(m.Data, &v); err != nil || v.UID == "" {
			l.o.Log.Warn("cluster: bad presence", "node", node, "error", err)
			return
		}
		if l.o.Presence != nil {
			l.o.Presence(v.UID, v.P)
		}
	case kindTyp:
		var v typing
		if err := json.Unmarshal(m.Data, &v); err != nil || v.Ev == nil {
			l.o.Log.Warn("cluster: bad typing", "node", node, "error", err)
			return
		}
		if l.o.Typing != nil {
			if err := l.o.Typing(v.Ev, v.To); err != nil {
				l.o.Log.Debug("cluster: typing", "error", err)
			}
		}
	}
}

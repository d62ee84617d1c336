// Package presence is the Tern presence hook (PROTOCOL §8). It keeps the
// retained im/p/{uid} of every user: on (or away/busy, as a device said on
// im/up/{uid}/{did}/pres) while any device is connected, off a grace period
// after the last one went. Late events of connections that were taken
// over or replaced by a newer generation change nothing; publications are
// coalesced per user, persisted before they are published, and rebuilt
// from the store at start. In cluster mode presence is cluster-wide
// (cluster.go).
package presence

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/metrics"
	"github.com/tern-im/tern/internal/offstack"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// Options configures the hook.
type Options struct {
	// Server publishes im/p/{uid} through its inline client.
	Server   *mqtt.Server
	Sessions *session.Registry
	Store    Store
	// Grace is how long a user stays published as online after its last
	// device went; 0 publishes off at once.
	Grace time.Duration
	// Coalesce is the least time between two publications for one user;
	// 0 publishes every change at once.
	Coalesce time.Duration
	// Now is the clock; nil means time.Now. Timers use package time, which
	// testing/synctest fakes.
	Now func() time.Time
	// Watchers, when set, makes every presence publication also go to the
	// …/eph of the live devices of the user's contacts (PROTOCOL §4,
	// "watched presence changes"), for users with at most MaxWatched
	// contacts.
	Watchers Watchers
	// Metrics counts presence publications; nil counts nothing.
	Metrics *metrics.Metrics

	// Cluster, set in cluster mode, makes presence cluster-wide (see
	// cluster.go); then Node names this node, Alive tells whether a node
	// is alive, First is this run's first connection generation, and
	// Settle is how long after the start the connections of nodes not
	// heard from (and this node's own from before a restart) are dropped.
	Cluster Cluster
	Node    string
	Alive   func(node string) bool
	First   uint64
	Settle  time.Duration
	// Announce, when set, sends each presence this node stores to the
	// other nodes at once (they call Mirror).
	Announce func(uid string, p im.Presence)
}

// Watchers answers who may see whose presence (messaging.Relations).
type Watchers interface {
	// VisibleSet returns C(uid) minus blocks either way; read-only.
	VisibleSet(uid string) (map[string]bool, error)
	// Visible reports whether other is in C(uid) and no block hides it.
	Visible(uid, other string) bool
}

// MaxWatched bounds the eph fan-out of one presence change: users with a
// larger C(uid) (big groups) are not pushed on …/eph; their contacts use
// the retained im/p/{uid} or presence.get.
const MaxWatched = 256

// watchQueue bounds the presence changes waiting for their eph fan-out;
// beyond it changes are dropped (eph is best effort, QoS 0).
const watchQueue = 1024

// Hook maintains presence.
type Hook struct {
	mqtt.HookBase
	opts *Options
	t    *tracker
	stop chan struct{}
	wg   sync.WaitGroup
	// watch carries published presences to the eph fan-out goroutine.
	watch chan watched
	// unmirror ends the store's presence watch (cluster mode); settled
	// is closed once the start's sweep of stale connections is done.
	unmirror func()
	settled  chan struct{}
	// pv is the last pv retained per user (cluster mode), so that a
	// record that arrives twice (link and watch) or late is not retained
	// again.
	pvMu sync.Mutex
	pv   map[string]uint64
}

// watched is one published presence change.
type watched struct {
	uid string
	p   im.Presence
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-presence" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnStarted, mqtt.OnSessionEstablish, mqtt.OnDisconnect, mqtt.OnWill, mqtt.OnWillSent,
		mqtt.OnPublish,
	}, []byte{b})
}

// Init takes *Options and republishes every stored presence as off: it
// runs before the listeners start, when nobody is connected. In cluster
// mode it republishes every stored presence as it is (devices on other
// nodes are connected) and starts mirroring the other nodes' changes.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil || o.Server == nil || o.Sessions == nil || o.Store == nil ||
		o.Grace < 0 || o.Coalesce < 0 || o.Cluster != nil && (o.Node == "" || o.Alive == nil) {
		return mqtt.ErrInvalidConfigType
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h.opts = o
	h.settled = make(chan struct{})
	to := trackerOptions{
		store: o.Store, publish: h.publish, now: o.Now, grace: o.Grace, coalesce: o.Coalesce, log: h.Log,
	}
	if o.Cluster != nil {
		to.conns, to.node = o.Cluster, o.Node
		h.pv = map[string]uint64{}
	}
	h.t = newTracker(to)
	if o.Cluster != nil {
		h.t.stored = h.stored
	}
	if o.Watchers != nil {
		h.watch = make(chan watched, watchQueue)
		h.t.changed = h.changed
	}
	// A session removed without OnDisconnect (the auth hook sweeps the
	// connections mochi closed without one) is that device going; for a
	// normal disconnect, handled in OnDisconnect, this changes nothing:
	// the generation is no longer the device's current one.
	o.Sessions.OnRemove(func(s *session.Session) {
		if !s.Anonymous {
			h.t.down(s.UID, s.DID, s.Gen)
		}
	})
	if o.Cluster != nil {
		return h.mirror()
	}
	n, err := h.t.rebuild()
	if err != nil {
		return fmt.Errorf("presence: rebuild: %w", err)
	}
	h.Log.Debug("presence rebuilt", "users", n)
	return nil
}

// OnStarted starts the eph fan-out.
func (h *Hook) OnStarted() {
	h.stop = make(chan struct{})
	if h.watch != nil {
		h.wg.Add(1)
		go h.fanout()
	}
	if h.opts.Cluster != nil {
		h.wg.Add(1)
		go h.settle()
	}
}

// changed queues a published presence for the eph fan-out. It runs under
// the user's shard lock, so it never blocks: when the queue is full the
// change is dropped (the retained im/p/{uid} still has it).
func (h *Hook) changed(uid string, p im.Presence) {
	select {
	case h.watch <- watched{uid, p}:
	default:
		h.Log.Debug("presence: eph fan-out queue full", "user", uid)
	}
}

// fanout sends each queued presence change to the …/eph of the live
// devices of the users who watch it, until Stop.
func (h *Hook) fanout() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case w := <-h.watch:
			h.push(w)
		}
	}
}

// push sends one change: to each x in C(uid) that uid is visible to as
// well (contacts both ways, co-members, no block), on every live device
// of x, in that device's encoding, QoS 0.
func (h *Hook) push(w watched) {
	vs, err := h.opts.Watchers.VisibleSet(w.uid)
	if err != nil {
		h.Log.Error("presence: watchers", "user", w.uid, "error", err)
		return
	}
	if len(vs) > MaxWatched {
		return
	}
	ev := codec.PresenceEvent{T: codec.TPres, UID: w.uid, Presence: codec.Presence{
		S: w.p.S, PV: w.p.PV, LS: w.p.LS, D: w.p.D, TX: w.p.TX,
	}}
	var enc [2][]byte // JSON, CBOR
	for x := range vs {
		devs := h.opts.Sessions.Devices(x)
		if len(devs) == 0 || !h.opts.Watchers.Visible(x, w.uid) {
			continue
		}
		for _, s := range devs {
			i := 0
			if s.Prefs().CBOR {
				i = 1
			}
			if enc[i] == nil {
				if enc[i], err = codec.Encode(&ev, i == 1); err != nil {
					h.Log.Error("presence: encode", "error", err)
					return
				}
			}
			if err := h.opts.Server.Publish(topics.Device(x, s.DID, topics.ChanEph), enc[i], false, 0); err != nil {
				h.Log.Debug("presence: eph", "user", x, "error", err)
			}
		}
	}
}

// Stop ends the eph fan-out, cancels the timers and records when the users
// still online were last seen.
func (h *Hook) Stop() error {
	if h.stop != nil {
		close(h.stop)
		h.wg.Wait()
		h.stop = nil
	}
	if h.unmirror != nil {
		h.unmirror()
		h.unmirror = nil
	}
	if h.t == nil {
		return nil
	}
	return h.t.stop()
}

// publish retains the user's presence. mochi routes it on the calling
// goroutine, often a client's read goroutine at CONNECT, and the route is
// deep: offstack keeps that goroutine's stack from growing for the
// connection's life (docs/bench.md, idle memory).
func (h *Hook) publish(uid string, payload []byte) error {
	h.opts.Metrics.PresenceChanged()
	var err error
	offstack.Run(func() { err = h.opts.Server.Publish(topics.Presence(uid), payload, true, 1) })
	return err
}

// refuse sends the device an err event (code 400) on its …/rpc, in its
// encoding, for a presence command it cannot use.
func (h *Hook) refuse(s *session.Session, why error) {
	ev := codec.Event{T: codec.TErr, Code: 400, Msg: strings.TrimPrefix(why.Error(), "presence: ")}
	b, err := codec.Encode(&ev, s.Prefs().CBOR)
	if err != nil {
		h.Log.Error("encode err event", "error", err)
		return
	}
	if err := h.opts.Server.Publish(topics.Device(s.UID, s.DID, topics.ChanRPC), b, false, 1); err != nil {
		h.Log.Debug("publish err event", "client", s.Client.ID, "error", err)
	}
}

// device returns the user session of a connection.
func (h *Hook) device(cl *mqtt.Client) (*session.Session, bool) {
	s, ok := h.opts.Sessions.Get(cl)
	if !ok || s.Anonymous {
		return nil, false
	}
	return s, true
}

// OnSessionEstablish counts the device as connected. It runs before mochi
// takes over an older session of the same ClientID, so the older one's
// disconnect and will already meet the newer generation.
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if s, ok := h.device(cl); ok {
		h.t.up(s.UID, s.DID, s.Gen)
	}
}

// OnDisconnect counts the device as gone, unless its session was taken
// over or a newer connection of the device exists.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if s, ok := h.device(cl); ok && !cl.IsTakenOver() {
		h.t.down(s.UID, s.DID, s.Gen)
	}
}

// presTopic reports whether topic is the device's own presence topic.
func presTopic(s *session.Session, topic string) bool {
	return topic == topics.Up(s.UID, s.DID, topics.UpPres)
}

// OnWill keeps a presence will from being retained on the upstream topic.
func (h *Hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if s, ok := h.device(cl); ok && presTopic(s, will.TopicName) {
		will.Retain = false
	}
	return will, nil
}

// OnWillSent honours a fired will on the device's presence topic as a
// presence command of that connection.
func (h *Hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	s, ok := h.device(cl)
	if !ok || !presTopic(s, pk.TopicName) || cl.IsTakenOver() {
		return
	}
	o, err := parseOp(pk.Payload)
	if err != nil {
		h.Log.Debug("presence will ignored", "client", cl.ID, "error", err)
		return
	}
	h.t.apply(s.UID, s.DID, s.Gen, o, false)
}

// OnPublish consumes presence commands on im/up/{uid}/{did}/pres; they are
// never routed. A malformed one is acknowledged and dropped.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, "im/up/") ||
		!strings.HasSuffix(pk.TopicName, "/"+topics.UpPres) {
		return pk, nil
	}
	s, ok := h.device(cl)
	if !ok || !presTopic(s, pk.TopicName) {
		return pk, packets.CodeSuccessIgnore // the acl hook refuses these first
	}
	o, err := parseOp(pk.Payload)
	if err != nil {
		// Not a reason code for MQTT 5: mochi would log the whole packet,
		// payload included, at error level for every bad command. The
		// device learns it from an err event instead.
		h.Log.Debug("presence command refused", "client", cl.ID, "error", err)
		h.refuse(s, err)
		return pk, packets.CodeSuccessIgnore
	}
	h.t.apply(s.UID, s.DID, s.Gen, o, true)
	return pk, packets.CodeSuccessIgnore
}

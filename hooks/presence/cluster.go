package presence

import (
	"encoding/json"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// Cluster is what presence needs of a cluster's shared store (cluster
// mode): the registry of every node's connections, and the stored
// presences, which any node may write (PutPresence refuses a pv that is
// not greater with im.ErrStale) and every node watches.
//
// In cluster mode a user is online while any of its devices is connected
// to any node: a node records its devices' connections in the registry
// and counts the user's devices on the other nodes from it. The node
// where a change happens writes the new presence (compare-and-set on pv,
// so pv grows cluster-wide); every node, the writer too, republishes
// each stored presence as the retained im/p/{uid} from the store's watch
// (and pushes it on its own watchers' …/eph). A node that starts
// republishes what is stored instead of marking everyone off; the
// connections of a node that is gone (not heard for the node timeout, or
// restarted) are dropped from the registry by the survivors, which then
// take its users off after the grace period.
type Cluster interface {
	im.Connections
	// WatchPresence calls fn with every stored presence (initial true)
	// and returns once they are delivered; then with each one any node
	// writes, in write order, until stop. fn runs on one goroutine.
	WatchPresence(fn func(uid string, p im.Presence, initial bool)) (stop func(), err error)
}

// mirror starts the store's presence watch: every stored presence is
// retained at once (the start's rebuild), every later one as it is
// written. The watch is the durable path; the node that writes a
// presence also sends it to the others at once (Options.Announce, then
// Mirror on each), which matters when a leader election stalls a watch.
func (h *Hook) mirror() error {
	n := 0
	stop, err := h.opts.Cluster.WatchPresence(func(uid string, p im.Presence, initial bool) {
		if initial {
			n++
		}
		h.apply(uid, p, initial)
	})
	if err != nil {
		return err
	}
	h.unmirror = stop
	h.Log.Debug("presence mirrored from the cluster", "users", n)
	return nil
}

// Mirror retains a presence another node stored (cluster mode), unless
// a record with this pv or a newer one was retained already.
func (h *Hook) Mirror(uid string, p im.Presence) { h.apply(uid, p, false) }

// stored is told of each presence this node stored (cluster mode).
func (h *Hook) stored(uid string, p im.Presence) {
	h.apply(uid, p, false)
	if h.opts.Announce != nil {
		h.opts.Announce(uid, p)
	}
}

// apply retains p as im/p/{uid} (and pushes it on …/eph unless it is
// the start's first pass) if its pv is newer than the last retained.
func (h *Hook) apply(uid string, p im.Presence, initial bool) {
	h.pvMu.Lock()
	if p.PV <= h.pv[uid] {
		h.pvMu.Unlock()
		return
	}
	h.pv[uid] = p.PV
	h.pvMu.Unlock()
	payload, err := json.Marshal(p)
	if err == nil {
		err = h.publish(uid, payload)
	}
	if err != nil {
		h.Log.Error("presence: publish", "user", uid, "error", err)
	}
	if !initial && h.watch != nil {
		h.changed(uid, p)
	}
}

// NodeGone drops the connections of a node that is gone from the
// registry and re-checks their users (cluster mode). Several survivors
// may do it at once: each connection is dropped by one of them.
func (h *Hook) NodeGone(node string) {
	h.drop(func(c im.Conn) bool { return c.Node == node })
}

// settle waits Settle after the start, then drops the connections of
// nodes not heard from since, and this node's own from before it
// restarted (their generations are older than this run's).
func (h *Hook) settle() {
	defer h.wg.Done()
	defer close(h.settled)
	select {
	case <-h.stop:
		return
	case <-time.After(h.opts.Settle):
	}
	o := h.opts
	h.drop(func(c im.Conn) bool {
		if c.Node == o.Node {
			return c.Gen <= o.First
		}
		return !o.Alive(c.Node)
	})
}

// Rejoin records this node's connections in the registry again and
// re-checks their users (cluster mode): the other nodes took this node
// as gone and dropped them, or a partition healed.
func (h *Hook) Rejoin() {
	n := h.t.rejoin()
	h.Log.Info("presence: connections registered again", "users", n)
}

// Settled is closed once the sweep after the start is done (cluster
// mode; never on a single node).
func (h *Hook) Settled() <-chan struct{} { return h.settled }

func (h *Hook) drop(gone func(c im.Conn) bool) {
	cs, err := h.opts.Cluster.Drop(gone)
	if err != nil {
		h.Log.Error("presence: drop connections", "error", err)
	}
	seen := map[string]bool{}
	for _, c := range cs {
		if !seen[c.UID] {
			seen[c.UID] = true
			h.t.lost(c.UID)
		}
	}
	if len(cs) > 0 {
		h.Log.Info("presence: dropped the connections of gone nodes", "connections", len(cs), "users", len(seen))
	}
}

package cluster

import (
	"sync"
	"time"
)

// liveness knows when each other node was last heard: any message of
// its counts, and every node sends a heartbeat every Options.Heartbeat.
// The clock is the receiving node's own, so no two machines' clocks are
// compared.
type liveness struct {
	mu    sync.Mutex
	heard map[string]time.Time
	// gone are the nodes this one took as gone, until heard again.
	gone map[string]bool
}

// hear records that node was heard now; it reports whether the node was
// unknown (never heard, or taken as gone) and whether it was taken as
// gone (it is back: a partition healed, or it was only slow).
func (lv *liveness) hear(node string) (isNew, back bool) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	_, known := lv.heard[node]
	lv.heard[node] = time.Now()
	back = lv.gone[node]
	delete(lv.gone, node)
	return !known, back
}

// silent removes and returns the nodes not heard since before.
func (lv *liveness) silent(before time.Time) []string {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	var out []string
	for n, t := range lv.heard {
		if t.Before(before) {
			out = append(out, n)
			delete(lv.heard, n)
			lv.gone[n] = true
		}
	}
	return out
}

// Alive reports whether node is this one or was heard within the node
// timeout.
func (l *Link) Alive(node string) bool {
	if node == l.o.Node {
		return true
	}
	l.live.mu.Lock()
	defer l.live.mu.Unlock()
	t, ok := l.live.heard[node]
	return ok && time.Since(t) < l.o.NodeTimeout
}

// beat sends a heartbeat every Heartbeat and tells Dead of each node
// silent for NodeTimeout, until Stop.
func (l *Link) beat() {
	defer l.wg.Done()
	tick := time.NewTicker(l.o.Heartbeat)
	defer tick.Stop()
	for {
		l.send(kindHB, struct{}{})
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		for _, n := range l.live.silent(time.Now().Add(-l.o.NodeTimeout)) {
			l.o.Log.Warn("cluster: node not heard from: taking it as gone", "node", n, "timeout", l.o.NodeTimeout)
			// If it is alive after all (slow, or on the other side of
			// a partition), it learns that its connections were dropped.
			l.send(kindGone, gone{Node: n})
			if l.o.Dead != nil {
				l.wg.Add(1)
				go func() {
					defer l.wg.Done()
					l.o.Dead(n)
				}()
			}
		}
	}
}

// gone tells the nodes that the sender took Node as gone.
type gone struct {
	Node string `json:"n"`
}

// rejoin tells Options.Rejoin, on its own goroutine, that this node's
// connections may have been dropped by the others: it was taken as gone,
// or it took others as gone and hears them again (a partition healed).
func (l *Link) rejoin(why string) {
	if l.o.Rejoin == nil {
		return
	}
	l.o.Log.Info("cluster: re-registering this node's connections", "why", why)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.o.Rejoin()
	}()
}

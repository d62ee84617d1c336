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
}

// hear records that node was heard now; it reports whether the node was
// unknown (never heard, or taken as gone).
func (lv *liveness) hear(node string) (isNew bool) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	_, known := lv.heard[node]
	lv.heard[node] = time.Now()
	return !known
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

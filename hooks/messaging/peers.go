package messaging

import (
	"sync"
	"time"
)

// peerTTL bounds how long a DM peer check is reused. Blocks invalidate
// at once (contacts.block/unblock go through this hook); only an account
// deleted through the admin API can be seen late, for at most this long.
const peerTTL = 10 * time.Second

// peerCache remembers DMPeer answers, so a conversation in full swing
// costs no store read per message: every Badger read transaction passes
// through one watermark goroutine, which became the bottleneck under
// many concurrent senders.
type peerCache struct {
	mu  sync.Mutex
	m   map[[2]string]peer
	now func() time.Time
}

type peer struct {
	exists, blocked bool
	at              time.Time
}

func newPeerCache(now func() time.Time) *peerCache {
	return &peerCache{m: map[[2]string]peer{}, now: now}
}

// get returns a fresh cached answer for a DM from uid to other.
func (c *peerCache) get(uid, other string) (peer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[[2]string{uid, other}]
	if !ok || c.now().Sub(p.at) > peerTTL {
		return peer{}, false
	}
	return p, true
}

func (c *peerCache) put(uid, other string, p peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	p.at = c.now()
	c.m[[2]string{uid, other}] = p
}

// forget drops what is cached about DMs between a and b, both ways.
func (c *peerCache) forget(a, b string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, [2]string{a, b})
	delete(c.m, [2]string{b, a})
}

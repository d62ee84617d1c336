package relations

import (
	"sync"
	"time"
)

// peerTTL bounds how long a DM peer check is reused. Blocks invalidate
// at once (contacts.block/unblock go through this hook) and so do account
// deletions (ForgetUser, through Relations.UserDeleted).
const peerTTL = 10 * time.Second

// Peers remembers DMPeer answers, so a conversation in full swing
// costs no store read per message: every Badger read transaction passes
// through one watermark goroutine, which became the bottleneck under
// many concurrent senders.
type Peers struct {
	mu  sync.Mutex
	m   map[[2]string]Peer
	now func() time.Time
}

// Peer is what a DM from one user to another needs to know.
type Peer struct {
	Exists, Blocked bool
	// Listed: a DM between the two committed since the answer was
	// cached, so the conversation is on both users' lists (only an
	// account deletion takes a DM off a list, and it drops the answer).
	Listed bool
	at     time.Time
}

// NewPeers returns an empty cache; now is its clock.
func NewPeers(now func() time.Time) *Peers {
	return &Peers{m: map[[2]string]Peer{}, now: now}
}

// Get returns a fresh cached answer for a DM from uid to other.
func (c *Peers) Get(uid, other string) (Peer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[[2]string{uid, other}]
	if !ok || c.now().Sub(p.at) > peerTTL {
		return Peer{}, false
	}
	return p, true
}

// Put caches the answer for a DM from uid to other.
func (c *Peers) Put(uid, other string, p Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	p.at = c.now()
	c.m[[2]string{uid, other}] = p
}

// Listed marks the cached answer for uid and other (if any) as Listed.
func (c *Peers) Listed(uid, other string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]string{uid, other}
	if p, ok := c.m[k]; ok {
		p.Listed = true
		c.m[k] = p
	}
}

// Forget drops what is cached about DMs between a and b, both ways.
func (c *Peers) Forget(a, b string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, [2]string{a, b})
	delete(c.m, [2]string{b, a})
}

// ForgetUser drops every cached answer that names uid, either way: the
// account is gone, and a DM to it must not land on the cached "exists".
func (c *Peers) ForgetUser(uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k[0] == uid || k[1] == uid {
			delete(c.m, k)
		}
	}
}

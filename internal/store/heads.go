package store

import (
	"hash/maphash"
	"sync"
)

// headShards and maxHeadsPerShard size the stream-head cache: 64 shards of
// at most 4,096 users each, ~260k users in about 15 MB. A full shard is
// emptied and refills from use.
const (
	headShards       = 64
	maxHeadsPerShard = 4096
)

// heads caches the last us of users' streams, so hello and an up-to-date
// sync need no Badger read transaction: every read transaction passes
// Badger's oracle lock and its one watermark goroutine, and a reconnect
// storm of thousands of devices queued there. The sequencer, the only
// writer of stream heads, advances an entry right after each commit and
// before any delivery of the committed events; a miss reads the store.
type heads struct {
	seed   maphash.Seed
	shards [headShards]headShard
}

type headShard struct {
	mu sync.RWMutex
	// gen counts the changes of the shard, so a fill read from the store
	// before an advance or a reset is not stored after it.
	gen uint64
	m   map[string]uint64
}

func newHeads() *heads {
	h := &heads{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].m = map[string]uint64{}
	}
	return h
}

func (h *heads) shard(uid string) *headShard {
	return &h.shards[maphash.String(h.seed, uid)%headShards]
}

// get returns uid's cached head and the shard generation to pass to fill
// on a miss.
func (h *heads) get(uid string) (n uint64, ok bool, gen uint64) {
	s := h.shard(uid)
	s.mu.RLock()
	n, ok = s.m[uid]
	gen = s.gen
	s.mu.RUnlock()
	return n, ok, gen
}

// fill stores n, read from the store, unless the shard changed since get
// returned gen (the value might be older than an advance in between).
func (h *heads) fill(uid string, n, gen uint64) {
	s := h.shard(uid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	s.put(uid, n)
}

// advance records a committed head (never moving an entry backwards).
func (h *heads) advance(uid string, n uint64) {
	s := h.shard(uid)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	if n > s.m[uid] {
		s.put(uid, n)
	}
}

func (s *headShard) put(uid string, n uint64) {
	if _, ok := s.m[uid]; !ok && len(s.m) >= maxHeadsPerShard {
		clear(s.m)
		s.gen++
	}
	s.m[uid] = n
}

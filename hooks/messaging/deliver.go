package messaging

import (
	"hash/maphash"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/internal/store"
	"github.com/tern-im/tern/topics"
)

// job is the live delivery of one committed event to some of its
// recipients (those of one shard).
type job struct {
	ev   codec.Event
	uids []string
	us   []uint64
	// skipUID/skipDID is a device that must not get the event (the
	// origin of a marker).
	skipUID, skipDID string
}

// deliverer fans committed events out to live devices. Jobs are queued
// by the sequencer in commit order, sharded by recipient, so each
// device's events keep their stream order; the PUBACK never waits for
// them.
type deliverer struct {
	h      *Hook
	shards []chan job
	seed   maphash.Seed
	quit   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

func newDeliverer(h *Hook, n int) *deliverer {
	d := &deliverer{h: h, seed: maphash.MakeSeed(), quit: make(chan struct{})}
	for range n {
		ch := make(chan job, 4096)
		d.shards = append(d.shards, ch)
		d.wg.Add(1)
		go d.run(ch)
	}
	return d
}

func (d *deliverer) stop() {
	d.once.Do(func() {
		close(d.quit)
		d.wg.Wait()
	})
}

func (d *deliverer) run(ch chan job) {
	defer d.wg.Done()
	for {
		select {
		case j := <-ch:
			d.deliver(j)
		case <-d.quit:
			return
		}
	}
}

// committed is the store.Append Committed callback: it runs on the
// sequencer goroutine, in commit order.
func (d *deliverer) committed(a *store.Append, skipUID, skipDID string) {
	n := len(d.shards)
	parts := make([]job, n)
	for i, uid := range a.To {
		s := int(maphash.String(d.seed, uid) % uint64(n))
		parts[s].uids = append(parts[s].uids, uid)
		parts[s].us = append(parts[s].us, a.US[i])
	}
	for s, j := range parts {
		if len(j.uids) == 0 {
			continue
		}
		j.ev, j.skipUID, j.skipDID = a.Event, skipUID, skipDID
		select {
		case d.shards[s] <- j:
		case <-d.quit:
			return
		}
	}
}

func (d *deliverer) deliver(j job) {
	h := d.h
	for i, uid := range j.uids {
		devs := h.opts.Sessions.Devices(uid)
		if len(devs) == 0 {
			continue
		}
		ev := j.ev
		ev.US = j.us[i]
		for _, s := range devs {
			if uid == j.skipUID && s.DID == j.skipDID {
				continue
			}
			h.sendEvent(uid, s.DID, s.Prefs(), &ev)
		}
	}
}

// sendEvent publishes one event to a device's in topic.
func (h *Hook) sendEvent(uid, did string, p session.Prefs, ev *codec.Event) {
	topic := topics.Device(uid, did, topics.ChanIn)
	b, err := h.encodeEvent(ev, p, h.limitFor(p, topic))
	if err != nil {
		h.Log.Error("encode event", "error", err)
		return
	}
	h.publish(topic, b, 1, nil)
	h.opts.Metrics.Delivered()
}

// limitFor is the largest payload that fits a device's maxPkt on topic.
func (h *Hook) limitFor(p session.Prefs, topic string) int {
	max := h.opts.MaxPacket
	if p.MaxPkt > 0 && p.MaxPkt < max {
		max = p.MaxPkt
	}
	// Fixed header (≤ 5), topic length and name, packet id, properties.
	return max - len(topic) - 16
}

// encodeEvent encodes ev in the device's encoding, cut to limit bytes
// with trunc:true when it does not fit (msg.get returns the whole event).
func (h *Hook) encodeEvent(ev *codec.Event, p session.Prefs, limit int) ([]byte, error) {
	b, err := codec.Encode(ev, p.CBOR)
	if err != nil || len(b) <= limit {
		return b, err
	}
	e := *ev
	e.Trunc = true
	for range 3 {
		over := len(b) - limit
		keep := len(e.B) - over - 32
		if keep <= 0 {
			e.B, e.Att, e.E2E, e.Mn = "", nil, nil, nil
		} else {
			e.B = cutUTF8(e.B, keep)
		}
		if b, err = codec.Encode(&e, p.CBOR); err != nil || len(b) <= limit {
			return b, err
		}
	}
	return b, nil // as small as it gets; mochi drops it if still too big
}

// cutUTF8 cuts s to at most n bytes on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// limiter is a token bucket per device.
type limiter struct {
	mu    sync.Mutex
	burst float64
	rate  float64
	now   func() time.Time
	m     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(burst int, rate float64, now func() time.Time) *limiter {
	return &limiter{burst: float64(burst), rate: rate, now: now, m: map[string]*bucket{}}
}

func (l *limiter) allow(k string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.m[k]
	if b == nil {
		if len(l.m) >= maxCached {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.m[k] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops buckets that have refilled: they hold no state.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.m {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.m, k)
		}
	}
}

// typingGate lets one typing notification per (user, cv) through per
// period.
type typingGate struct {
	mu     sync.Mutex
	period time.Duration
	now    func() time.Time
	last   map[string]time.Time
}

func newTypingGate(period time.Duration, now func() time.Time) *typingGate {
	return &typingGate{period: period, now: now, last: map[string]time.Time{}}
}

func (g *typingGate) allow(uid, cv string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	k := uid + "\x00" + cv
	if t, ok := g.last[k]; ok && now.Sub(t) < g.period {
		return false
	}
	if len(g.last) >= maxCached {
		for k, t := range g.last {
			if now.Sub(t) >= g.period {
				delete(g.last, k)
			}
		}
	}
	g.last[k] = now
	return true
}

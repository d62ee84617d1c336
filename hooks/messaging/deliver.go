package messaging

import (
	"hash/maphash"
	"sync"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/service"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// shardQueue bounds the jobs waiting for one delivery worker. With the
// commit stream in front of them it bounds delivery's memory: when the
// workers fall behind, the dispatcher waits, the stream fills and
// appenders wait before their PUBACK.
const shardQueue = 1024

// job is the live delivery of one committed append to the recipients of
// one shard (indexes into a.To).
type job struct {
	a   *im.Append
	idx []int
}

// deliverer fans committed appends out to live devices. One dispatcher
// takes them from the commit stream in commit order and shards them by
// recipient, so each device's events keep their stream order; the PUBACK
// never waits for delivery, only for room in the stream.
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
		ch := make(chan job, shardQueue)
		d.shards = append(d.shards, ch)
		d.wg.Add(1)
		go d.run(ch)
	}
	d.wg.Add(1)
	go d.dispatch(h.opts.Commits)
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

// dispatch consumes the commit stream.
func (d *deliverer) dispatch(s *im.CommitStream) {
	defer d.wg.Done()
	n := len(d.shards)
	parts := make([][]int, n)
	for {
		var a *im.Append
		select {
		case a = <-s.C():
		case <-d.quit:
			return
		}
		for i, uid := range a.To {
			k := int(maphash.String(d.seed, uid) % uint64(n))
			parts[k] = append(parts[k], i)
		}
		for k, idx := range parts {
			if len(idx) == 0 {
				continue
			}
			parts[k] = nil
			select {
			case d.shards[k] <- job{a: a, idx: idx}:
			case <-d.quit:
				return
			}
		}
		s.Done()
	}
}

// deliver sends one job: the event is encoded once per recipient and
// encoding (devices with a smaller maxPkt get a cut copy).
func (d *deliverer) deliver(j job) {
	h := d.h
	ev := j.a.Event // one copy per job: us differs per recipient
	for _, i := range j.idx {
		uid := j.a.To[i]
		devs := h.opts.Sessions.Devices(uid)
		if len(devs) == 0 {
			continue
		}
		ev.US = j.a.US[i]
		var enc encodings
		for _, s := range devs {
			if uid == j.a.QuietUID && s.DID == j.a.QuietDID {
				continue
			}
			h.sendEncoded(uid, s.DID, s.Prefs(), &ev, &enc)
		}
	}
}

// sendEvent publishes one event to the device's in topic.
func (h *Hook) sendEvent(d *device, ev *im.Event) {
	var enc encodings
	h.sendEncoded(d.uid, d.did, d.pref, ev, &enc)
}

// sendEncoded publishes ev to a device's in topic, reusing enc (the
// event's encodings so far) when it fits the device's packet size.
func (h *Hook) sendEncoded(uid, did string, p session.Prefs, ev *im.Event, enc *encodings) {
	topic := topics.Device(uid, did, topics.ChanIn)
	limit := service.LimitFor(h.opts.MaxPacket, p, topic)
	b, err := enc.get(ev, p.CBOR)
	if err == nil && len(b) > limit {
		b, err = service.Truncate(ev, p.CBOR, limit)
	}
	if err != nil {
		h.Log.Error("encode event", "error", err)
		return
	}
	h.publish(topic, b, 1, nil)
	h.opts.Metrics.Delivered()
}

package messaging

import (
	"sync"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/service"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// DeliveryWorkers is how many goroutines deliver, one per lane of the
// commit stream (the broker creates the stream with as many lanes).
const DeliveryWorkers = 4

// deliverer fans committed appends out to live devices: one worker per
// lane of the commit stream, so each user's events are delivered by one
// worker in stream order and a device never sees them reordered. The
// PUBACK never waits for delivery, only for room in the stream.
type deliverer struct {
	h    *Hook
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newDeliverer(h *Hook) *deliverer {
	d := &deliverer{h: h, quit: make(chan struct{})}
	s := h.opts.Commits
	for i := range s.Lanes() {
		d.wg.Add(1)
		go d.run(s, s.Lane(i))
	}
	return d
}

func (d *deliverer) stop() {
	d.once.Do(func() {
		close(d.quit)
		d.wg.Wait()
	})
}

func (d *deliverer) run(s *im.CommitStream, lane <-chan im.Delivery) {
	defer d.wg.Done()
	for {
		select {
		case j := <-lane:
			d.deliver(j)
			s.Done(j)
		case <-d.quit:
			return
		}
	}
}

// deliver sends one lane's part of an append: the event is encoded once
// per recipient and encoding (devices with a smaller maxPkt get a cut
// copy).
func (d *deliverer) deliver(j im.Delivery) {
	h := d.h
	ev := j.A.Event // one copy per delivery: us differs per recipient
	for _, i := range j.Idx {
		uid := j.A.To[i]
		devs := h.opts.Sessions.Devices(uid)
		if len(devs) == 0 {
			continue
		}
		ev.US = j.A.US[i]
		var enc encodings
		for _, s := range devs {
			if uid == j.A.QuietUID && s.DID == j.A.QuietDID {
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

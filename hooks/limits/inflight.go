package limits

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// queue is the in-flight accounting of one client. est is an upper bound
// of the bytes held in the client's mochi Inflight store: it only grows
// on the publish path (PUBACKs do not lower it) and is set back to the
// true figure each time it crosses the cap, so the publish path pays one
// atomic add and an exact count happens once per cap/4 bytes delivered.
type queue struct {
	est  atomic.Int64
	trim sync.Mutex // one exact count at a time
}

// size is what a held delivery is charged: its topic and payload.
func size(pk *packets.Packet) int64 { return int64(len(pk.TopicName) + len(pk.Payload)) }

func (h *Hook) queue(id string) *queue {
	if q, ok := h.queues.Load(id); ok {
		return q.(*queue)
	}
	q := new(queue)
	// Unknown: the session may hold deliveries from before (a takeover
	// clones them), so the first publish counts exactly.
	q.est.Store(h.opts.MaxInflightBytes)
	actual, _ := h.queues.LoadOrStore(id, q)
	return actual.(*queue)
}

func (h *Hook) forget(cl *mqtt.Client) { h.queues.Delete(cl.ID) }

// OnQosPublish runs after mochi stored a QoS>0 delivery in the client's
// Inflight (connected or not). When the client then holds more than
// MaxInflightBytes, the oldest deliveries are dropped until it holds at
// most 3/4 of it: IM devices recover them with sync (the stream is the
// source of truth), and a device that never acknowledges pins no more.
func (h *Hook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	max := h.opts.MaxInflightBytes
	if max == 0 || cl.Net.Inline || pk.FixedHeader.Type != packets.Publish {
		return
	}
	q := h.queue(cl.ID)
	if q.est.Add(size(&pk)) <= max {
		return
	}
	q.trim.Lock()
	defer q.trim.Unlock()
	before := q.est.Load()
	if before <= max {
		return // another publisher just trimmed
	}
	held := cl.State.Inflight.GetAll(false)
	var total int64
	for i := range held {
		if held[i].FixedHeader.Type == packets.Publish {
			total += size(&held[i])
		}
	}
	if total > max {
		// Oldest first: Created has second resolution, packet ids order
		// the deliveries of one second.
		slices.SortFunc(held, func(a, b packets.Packet) int {
			return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.PacketID, b.PacketID))
		})
		var n, dropped int64
		for i := 0; i < len(held) && total > max/4*3; i++ {
			p := &held[i]
			if p.FixedHeader.Type != packets.Publish || p.PacketID == pk.PacketID {
				// An acknowledgement, or the delivery being published (mochi
				// may store it again after this hook).
				continue
			}
			if !cl.State.Inflight.Delete(p.PacketID) {
				continue // acknowledged meanwhile
			}
			cl.State.Inflight.IncreaseSendQuota()
			if h.opts.Info != nil {
				atomic.AddInt64(&h.opts.Info.Inflight, -1)
			}
			total -= size(p)
			n++
			dropped += size(p)
		}
		h.opts.Metrics.InflightDropped.Add(float64(n))
		h.opts.Metrics.InflightDroppedBytes.Add(float64(dropped))
		h.Log.Debug("in-flight cap reached: dropped the oldest deliveries",
			"client", cl.ID, "dropped", n, "bytes", dropped, "max", max)
	}
	// Adds racing with the count are either in total and est (counted
	// twice: still an upper bound) or only in est (right).
	q.est.Add(total - before)
}

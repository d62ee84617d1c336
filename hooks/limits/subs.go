package limits

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/topics"
)

// overCap stands in for a filter refused by the subscription cap between
// OnSubscribe and OnSubscribed: it is an invalid filter (# before its
// end), so mochi neither subscribes it nor sends retained messages for it.
const overCap = "#/tern-over-subscription-cap"

// OnSubscribe refuses the new filters of a SUBSCRIBE that would take the
// client beyond MaxSubscriptions. Re-subscribing a filter the client
// already holds only replaces it and is always allowed. It runs on the
// client's goroutine, as does every change to its subscriptions.
//
// It also marks the filters that can match no retained message (a
// device's own downstream topics, topics.HoldsRetained) "send no retained
// messages" (retain handling 2): mochi would otherwise scan its retained
// index for them on the client's read goroutine, a recursion that takes
// that goroutine's stack to 64 KiB, kept for the connection's life until
// GCs halve it (docs/bench.md, idle memory).
func (h *Hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	var fs packets.Subscriptions
	for i, f := range pk.Filters {
		if f.RetainHandling != 2 && !topics.HoldsRetained(f.Filter) {
			if fs == nil {
				fs = append(packets.Subscriptions(nil), pk.Filters...) // never write the caller's slice
			}
			fs[i].RetainHandling = 2
		}
	}
	if fs != nil {
		pk.Filters = fs
	}
	max := h.opts.MaxSubscriptions
	if max == 0 {
		return pk
	}
	n := cl.State.Subscriptions.Len()
	fs = nil
	seen := map[string]bool{}
	for i, f := range pk.Filters {
		if _, held := cl.State.Subscriptions.Get(f.Filter); held || seen[f.Filter] {
			continue
		}
		if n < max {
			n++
			seen[f.Filter] = true
			continue
		}
		if fs == nil {
			fs = append(packets.Subscriptions(nil), pk.Filters...) // never write the caller's slice
		}
		fs[i].Filter = overCap
	}
	if fs != nil {
		pk.Filters = fs
	}
	return pk
}

// OnSubscribed turns mochi's "invalid filter" answer for the filters
// refused in OnSubscribe into quota exceeded (0x97); MQTT 3.1.1 has only
// 0x80 (failure), which mochi already put there. reasonCodes is the
// SUBACK's own slice, written before the SUBACK is sent.
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	for i, f := range pk.Filters {
		if f.Filter != overCap || i >= len(reasonCodes) {
			continue
		}
		h.opts.Metrics.SubscribeRefused.Inc()
		if cl.Properties.ProtocolVersion == 5 {
			reasonCodes[i] = packets.ErrQuotaExceeded.Code
		}
		h.Log.Debug("subscription refused: cap reached", "client", cl.ID, "max", h.opts.MaxSubscriptions)
	}
}

// Package metrics is the tern-metrics hook: it counts what clients send,
// as read from their connections, so publishes the server injects itself
// (deliveries, replies, presence) are never counted as received.
package metrics

import (
	"bytes"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/metrics"
)

// Options configures the hook.
type Options struct {
	Metrics *metrics.Metrics
}

// Hook counts client packets.
type Hook struct {
	mqtt.HookBase
	m *metrics.Metrics
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-metrics" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPacketRead}, []byte{b})
}

// Init takes *Options.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil || o.Metrics == nil {
		return mqtt.ErrInvalidConfigType
	}
	h.m = o.Metrics
	return nil
}

// OnPacketRead counts PUBLISH packets read from a client connection.
// mochi calls it only for packets read from the network: InjectPacket
// and the inline client bypass it.
func (h *Hook) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish {
		h.m.MessagesIn.Inc()
	}
	return pk, nil
}

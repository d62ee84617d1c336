// Package limits is the hook for per-connection protocol limits that mochi
// does not enforce itself: the server keepalive cap.
package limits

import (
	"bytes"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Options configures the hook.
type Options struct {
	// MaxKeepalive is the largest keepalive (seconds) granted to MQTT 5
	// clients; a larger or zero request gets this value back as server
	// keepalive in CONNACK. 0 means no cap. MQTT 3.1.1 has no way to tell
	// the client, so its keepalive is left as asked.
	MaxKeepalive uint16
}

// Hook applies the limits.
type Hook struct {
	mqtt.HookBase
	opts *Options
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-limits" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool { return bytes.Contains([]byte{mqtt.OnConnect}, []byte{b}) }

// Init takes *Options.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil {
		return mqtt.ErrInvalidConfigType
	}
	h.opts = o
	return nil
}

// OnConnect caps the keepalive of MQTT 5 clients.
func (h *Hook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	max := h.opts.MaxKeepalive
	if max == 0 || cl.Properties.ProtocolVersion < 5 {
		return nil
	}
	if cl.State.Keepalive == 0 || cl.State.Keepalive > max {
		cl.State.Keepalive = max
		cl.State.ServerKeepalive = true
	}
	return nil
}

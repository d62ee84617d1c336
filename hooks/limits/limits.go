// Package limits is the hook for per-client limits that mochi does not
// enforce itself: the server keepalive cap, the number of subscriptions
// per client and the bytes of QoS>0 deliveries a client may pin in flight
// or queued while it is offline.
package limits

import (
	"bytes"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"

	"github.com/tern-im/tern/internal/metrics"
)

// Options configures the hook.
type Options struct {
	// MaxKeepalive is the largest keepalive (seconds) granted to MQTT 5
	// clients; a larger or zero request gets this value back as server
	// keepalive in CONNACK. 0 means no cap. MQTT 3.1.1 has no way to tell
	// the client, so its keepalive is left as asked.
	MaxKeepalive uint16
	// MaxSubscriptions caps the filters one client holds; filters beyond
	// it are refused in SUBACK (0x97 quota exceeded for MQTT 5, 0x80 for
	// 3.1.1). 0 means no cap.
	MaxSubscriptions int
	// MaxInflightBytes caps the topic and payload bytes of the QoS>0
	// deliveries held for one client, awaiting PUBACK or queued while it
	// is offline: beyond it the oldest are dropped. 0 means no cap.
	MaxInflightBytes int64
	// Metrics counts refusals and drops. Required.
	Metrics *metrics.Metrics
	// Info is mochi's server info, whose in-flight gauge is kept right
	// when deliveries are dropped; nil leaves it alone.
	Info *system.Info
	// Server is the mochi server, whose topic index loses an expired
	// session's subscriptions. Required.
	Server *mqtt.Server
}

// Hook applies the limits.
type Hook struct {
	mqtt.HookBase
	opts *Options

	queues sync.Map // client id → *queue, while it has a session
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-limits" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnSubscribe, mqtt.OnSubscribed,
		mqtt.OnQosPublish, mqtt.OnDisconnect, mqtt.OnClientExpired,
	}, []byte{b})
}

// Init takes *Options.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil || o.Metrics == nil || o.Server == nil || o.MaxSubscriptions < 0 || o.MaxInflightBytes < 0 {
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

// OnDisconnect forgets the in-flight accounting of a session that ends
// with its connection.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire {
		h.forget(cl)
	}
}

// OnClientExpired ends an expired session's subscriptions and forgets its
// in-flight accounting. mochi deletes an expired client but leaves its
// subscriptions in the topic index, where they would outlive it for good.
func (h *Hook) OnClientExpired(cl *mqtt.Client) {
	h.opts.Server.UnsubscribeClient(cl)
	h.forget(cl)
}

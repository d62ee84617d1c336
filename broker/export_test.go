package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/tern-im/tern/internal/metrics"
)

// RetainedCount returns how many retained messages mochi holds on topics
// matching filter.
func (b *Broker) RetainedCount(filter string) int { return len(b.mqtt.Topics.Messages(filter)) }

// RetainedTotal returns how many retained messages mochi holds.
func (b *Broker) RetainedTotal() int { return b.mqtt.Topics.Retained.Len() }

// InflightBytes returns the topic and payload bytes of the QoS>0
// deliveries mochi holds for a client id.
func (b *Broker) InflightBytes(id string) int {
	cl, ok := b.mqtt.Clients.Get(id)
	if !ok {
		return -1
	}
	n := 0
	for _, pk := range cl.State.Inflight.GetAll(false) {
		n += len(pk.TopicName) + len(pk.Payload)
	}
	return n
}

// Metrics returns the broker's collectors.
func (b *Broker) Metrics() *metrics.Metrics { return b.metrics }

// AddHook adds a hook to the running mochi server (test observers).
func (b *Broker) AddHook(h mqtt.Hook, config any) error { return b.mqtt.AddHook(h, config) }

// Subscribed reports whether client id holds a subscription to filter in
// mochi's topic index.
func (b *Broker) Subscribed(id, filter string) bool {
	_, ok := b.mqtt.Topics.Subscribers(filter).Subscriptions[id]
	return ok
}

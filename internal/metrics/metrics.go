// Package metrics holds Tern's Prometheus collectors. One Metrics value is
// created per broker with its own registry (no globals), handed to the hooks
// that count, and served by the HTTP listener at /metrics.
package metrics

import (
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the broker's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Connections  prometheus.Gauge
	Connects     prometheus.Counter
	AuthFailures *prometheus.CounterVec // label reason
	AuthLogins   *prometheus.CounterVec // label method: password, token, anonymous
	ACLDenials   *prometheus.CounterVec // label op: publish, subscribe

	// InflightDropped counts queued QoS>0 deliveries dropped, oldest first,
	// to keep a client within limits.max_inflight_bytes (devices recover
	// them with sync); InflightDroppedBytes is their size.
	InflightDropped      prometheus.Counter
	InflightDroppedBytes prometheus.Counter
	// SubscribeRefused counts filters refused beyond
	// limits.max_subscriptions.
	SubscribeRefused prometheus.Counter
	// Limited counts RPCs and group changes refused by a rate limit or a
	// group cap (label limit: rpc_read, rpc_write, groups_owned,
	// group_adds).
	Limited *prometheus.CounterVec
}

// New creates and registers the collectors, plus the Go runtime and
// process collectors. Message and byte counts are read from mochi's own
// atomic counters in info, so the publish path pays nothing extra.
func New(info *system.Info) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tern_connections", Help: "MQTT connections currently authenticated.",
		}),
		Connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_connects_total", Help: "Accepted MQTT connections.",
		}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_auth_failures_total", Help: "Refused CONNECTs by reason.",
		}, []string{"reason"}),
		AuthLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_auth_logins_total", Help: "Accepted CONNECTs by authentication method.",
		}, []string{"method"}),
		ACLDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_acl_denials_total", Help: "ACL denials by operation.",
		}, []string{"op"}),
		InflightDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_inflight_dropped_total", Help: "Queued deliveries dropped, oldest first, beyond a client's in-flight byte cap.",
		}),
		InflightDroppedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_inflight_dropped_bytes_total", Help: "Bytes (topic and payload) of the deliveries counted by tern_inflight_dropped_total.",
		}),
		SubscribeRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_subscribe_refused_total", Help: "Subscription filters refused beyond a client's subscription cap.",
		}),
		Limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_limited_total", Help: "Requests refused by a rate limit or group cap, by limit.",
		}, []string{"limit"}),
	}
	for _, l := range []string{"rpc_read", "rpc_write", "groups_owned", "group_adds"} {
		m.Limited.WithLabelValues(l)
	}
	// Export the denial series at zero from the start.
	m.ACLDenials.WithLabelValues("publish")
	m.ACLDenials.WithLabelValues("subscribe")
	m.Registry.MustRegister(
		m.Connections, m.Connects, m.AuthFailures, m.AuthLogins, m.ACLDenials,
		m.InflightDropped, m.InflightDroppedBytes, m.SubscribeRefused, m.Limited,
		counter("tern_messages_in_total", "PUBLISH packets received from clients.", &info.MessagesReceived),
		counter("tern_messages_out_total", "PUBLISH packets sent to clients.", &info.MessagesSent),
		counter("tern_bytes_in_total", "Bytes received from clients.", &info.BytesReceived),
		counter("tern_bytes_out_total", "Bytes sent to clients.", &info.BytesSent),
		counter("tern_messages_dropped_total", "Deliveries dropped by full client queues (recovered by sync).", &info.MessagesDropped),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// StoreUnreadable exports n, the count of unreadable stored records that
// reads skipped, as tern_store_unreadable_records_total.
func (m *Metrics) StoreUnreadable(n func() int64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tern_store_unreadable_records_total",
		Help: "Stored event records that did not decode and were skipped by a read (tern store check finds them).",
	}, func() float64 { return float64(n()) }))
}

func counter(name, help string, v *int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
		func() float64 { return float64(atomic.LoadInt64(v)) })
}

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
	ACLDenials   *prometheus.CounterVec // label op: publish, subscribe
	// ConnRefused counts connections closed at accept, before any MQTT
	// work, by reason: max_connections, max_connections_per_ip,
	// connect_rate_per_ip.
	ConnRefused *prometheus.CounterVec
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
		ACLDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_acl_denials_total", Help: "ACL denials by operation.",
		}, []string{"op"}),
	}
	m.ConnRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tern_connections_refused_total", Help: "Connections closed at accept by a connection limit, by reason.",
	}, []string{"reason"})
	// Export the denial series at zero from the start.
	m.ACLDenials.WithLabelValues("publish")
	m.ACLDenials.WithLabelValues("subscribe")
	for _, r := range []string{"max_connections", "max_connections_per_ip", "connect_rate_per_ip"} {
		m.ConnRefused.WithLabelValues(r)
	}
	m.Registry.MustRegister(
		m.Connections, m.Connects, m.AuthFailures, m.ACLDenials, m.ConnRefused,
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

// AddDisk exports the disk reserve state: tern_disk_reserve_low (1 while
// writes are refused for lack of space) and tern_disk_free_bytes.
func (m *Metrics) AddDisk(low func() bool, free func() uint64) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tern_disk_reserve_low", Help: "1 while the data dir's free space is below the reserve and writes are refused.",
		}, func() float64 {
			if low() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tern_disk_free_bytes", Help: "Free bytes on the data dir's filesystem at the last measurement.",
		}, func() float64 { return float64(free()) }),
	)
}

// AddListener exports tern_listener_accepting{listener} (0 while the
// listener's accept fails or after it stopped).
func (m *Metrics) AddListener(id string, accepting func() bool) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tern_listener_accepting", Help: "1 while the MQTT listener accepts connections.",
		ConstLabels: prometheus.Labels{"listener": id},
	}, func() float64 {
		if accepting() {
			return 1
		}
		return 0
	}))
}

func counter(name, help string, v *int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
		func() float64 { return float64(atomic.LoadInt64(v)) })
}

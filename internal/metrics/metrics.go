// Package metrics holds Tern's Prometheus collectors. One Metrics value is
// created per broker with its own registry (no globals), handed to the hooks
// that count, and served by the HTTP listener at /metrics.
package metrics

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tern-im/tern/internal/buildinfo"
)

// Metrics are the broker's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Connections  prometheus.Gauge
	Connects     prometheus.Counter
	AuthFailures *prometheus.CounterVec // label reason
	AuthLogins   *prometheus.CounterVec // label method: password, token, anonymous
	ACLDenials   *prometheus.CounterVec // label op: publish, subscribe
	// ConnRefused counts connections closed at accept, before any MQTT
	// work, by reason: max_connections, max_connections_per_ip,
	// connect_rate_per_ip.
	ConnRefused *prometheus.CounterVec

	// MessagesIn counts PUBLISH packets read from client connections;
	// publishes the server injects itself are not counted.
	MessagesIn prometheus.Counter
	// EventsAppended counts events committed to the store (duplicates
	// excluded); BatchSize observes the events per sequencer commit.
	EventsAppended prometheus.Counter
	BatchSize      prometheus.Histogram
	// Deliveries counts events published live to devices' …/in.
	Deliveries prometheus.Counter
	// RPCs counts RPC requests by op and result code (200 for success);
	// SyncDuration observes how long sync requests take.
	RPCs         *prometheus.CounterVec
	SyncDuration prometheus.Histogram
	// PresenceChanges counts presence publications (im/p/{uid}).
	PresenceChanges prometheus.Counter

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

// knownOps bounds the op label of RPCs: any other op is counted as
// "other", so a client cannot grow the series.
var knownOps = map[string]bool{
	"hello": true, "sync": true, "history": true, "search": true, "conv.list": true, "conv.set": true,
	"msg.get": true, "presence.get": true, "contacts.list": true, "contacts.add": true,
	"contacts.remove": true, "contacts.block": true, "contacts.unblock": true,
	"group.create": true, "group.add": true, "group.remove": true, "group.leave": true,
	"group.members": true, "group.role": true, "group.update": true,
	"file.put": true, "file.commit": true, "file.stat": true, "file.get": true,
}

// RPC records one RPC of op answered with code (200 on success) that
// took d. Safe on a nil *Metrics (hooks built without metrics).
func (m *Metrics) RPC(op string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if !knownOps[op] {
		op = "other"
	}
	m.RPCs.WithLabelValues(op, strconv.Itoa(code)).Inc()
	if op == "sync" {
		m.SyncDuration.Observe(d.Seconds())
	}
}

// Delivered records one live delivery. Safe on a nil *Metrics.
func (m *Metrics) Delivered() {
	if m != nil {
		m.Deliveries.Inc()
	}
}

// PresenceChanged records one presence publication. Safe on a nil
// *Metrics.
func (m *Metrics) PresenceChanged() {
	if m != nil {
		m.PresenceChanges.Inc()
	}
}

// Committed records one sequencer commit of n events (store.Options
// OnCommit).
func (m *Metrics) Committed(n int) {
	m.EventsAppended.Add(float64(n))
	m.BatchSize.Observe(float64(n))
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
		MessagesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_messages_in_total", Help: "PUBLISH packets received from clients (not those the server injects).",
		}),
		EventsAppended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_events_appended_total", Help: "Events committed to the store (duplicates excluded).",
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tern_sequencer_batch_size", Help: "Events per sequencer commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		Deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_deliveries_total", Help: "Events published live to devices (…/in).",
		}),
		RPCs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tern_rpc_requests_total", Help: "RPC requests by op and result code (200 = ok).",
		}, []string{"op", "code"}),
		SyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tern_sync_duration_seconds", Help: "Time to answer a sync RPC.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8), // 100 µs … 1.6 s
		}),
		PresenceChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tern_presence_changes_total", Help: "Presence publications (im/p/{uid}).",
		}),
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
		m.Connections, m.Connects, m.AuthFailures, m.AuthLogins, m.ACLDenials, m.ConnRefused,
		m.MessagesIn, m.EventsAppended, m.BatchSize, m.Deliveries, m.RPCs, m.SyncDuration, m.PresenceChanges,
		buildInfo(),
		m.InflightDropped, m.InflightDroppedBytes, m.SubscribeRefused, m.Limited,
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

// buildInfo is tern_build_info{version,commit,goversion} 1.
func buildInfo() prometheus.Collector {
	in := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tern_build_info", Help: "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": in.Version, "commit": in.Commit, "goversion": in.GoVersion},
	})
	g.Set(1)
	return g
}

// StoreSize registers tern_store_size_bytes, read from size at scrape.
func (m *Metrics) StoreSize(size func() int64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tern_store_size_bytes", Help: "Bytes the store uses on disk (LSM tree and value log).",
	}, func() float64 { return float64(size()) }))
}

// AddFiles exports the file store's counters: tern_file_chunks_total
// (MQTT chunks stored), tern_file_commits_total (uploads committed, MQTT
// and HTTP), tern_file_thumbnails_total (thumbnails made) and
// tern_files_collected_total (expired uploads and unattached files
// removed).
func (m *Metrics) AddFiles(chunks, commits, thumbs, collected func() int64) {
	for _, c := range []struct {
		name, help string
		fn         func() int64
	}{
		{"tern_file_chunks_total", "File chunks stored (MQTT uploads).", chunks},
		{"tern_file_commits_total", "Uploads committed (MQTT and HTTP).", commits},
		{"tern_file_thumbnails_total", "Image thumbnails made (each once per content).", thumbs},
		{"tern_files_collected_total", "Expired uploads and never-attached files removed by the collector.", collected},
	} {
		fn := c.fn
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(fn()) }))
	}
}

// AddSearch registers tern_search_index_bytes (the search index on disk)
// and tern_search_lag_seconds (how far behind the committed events the
// index was at its last pass; 0 when it caught up), read at scrape.
func (m *Metrics) AddSearch(size func() int64, lag func() time.Duration) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tern_search_index_bytes", Help: "Bytes the search index uses on disk.",
		}, func() float64 { return float64(size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tern_search_lag_seconds", Help: "Age of the newest event the search index took while more were waiting; 0 when it is caught up.",
		}, func() float64 { return lag().Seconds() }),
	)
}

// AddSearchWorker registers tern_search_worker_restarts_total: how often
// the search index's worker process died and another was started.
func (m *Metrics) AddSearchWorker(restarts func() uint64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tern_search_worker_restarts_total", Help: "Search worker processes started after one died.",
	}, func() float64 { return float64(restarts()) }))
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

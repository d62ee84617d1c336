package firmwaresim

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is a run's outcome; its JSON keys are stable (scripts read them).
type Report struct {
	Phase    string  `json:"phase"`
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"` // im or raw
	Devices  int     `json:"devices"`
	Online   int     `json:"online"`
	Seconds  float64 `json:"seconds"` // load phase length (connect phase: time since the start)

	Generated       uint64  `json:"generated"`
	Expected        uint64  `json:"expected"` // (message, recipient) pairs
	Delivered       uint64  `json:"delivered"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	Lost            uint64  `json:"lost"`
	Duplicated      uint64  `json:"duplicated"`
	OutOfOrder      uint64  `json:"out_of_order"`
	Redelivered     uint64  `json:"redelivered"` // filtered by us, harmless
	Gaps            uint64  `json:"gaps"`
	Published       uint64  `json:"published"`
	Resent          uint64  `json:"resent"`
	Rejected        uint64  `json:"rejected"`
	Reconnects      uint64  `json:"reconnects"`
	LinkDrops       uint64  `json:"link_drops"`
	Presence        uint64  `json:"presence_updates,omitempty"`
	PresenceOOO     uint64  `json:"presence_out_of_order,omitempty"`

	LatencyMS Percentiles `json:"latency_ms"`
	CatchUpMS Percentiles `json:"catch_up_ms"`

	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectRate    float64 `json:"connect_per_sec"`
	StormSeconds   float64 `json:"storm_seconds,omitempty"` // -1: not all came back
	StormDevices   int     `json:"storm_devices,omitempty"`

	BrokerRSSBefore  int64   `json:"broker_rss_before,omitempty"`
	BrokerRSSAfter   int64   `json:"broker_rss_after,omitempty"`
	BrokerRSSPerConn float64 `json:"broker_rss_per_conn,omitempty"`

	// Missing names a few lost deliveries as "sender/n→device".
	Missing  []string `json:"missing,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Percentiles of a histogram in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), Max: ms(h.Max()),
	}
}

// report builds a report; load is the load phase length so far.
func (r *Runner) report(load time.Duration) *Report {
	c, lat, cu := r.acc.Snapshot()
	for _, d := range r.devs {
		// IM devices count their protocol work in their client.
		s := d.Stats()
		c.Published += s.Published
		c.Resent += s.Resent
		c.Rejected += s.Rejected
		c.Reconnects += s.Reconnects
		c.Redelivery += s.Redelivered
		c.Gaps += s.Gaps
	}
	rep := &Report{
		Phase: "done", Scenario: r.o.Scenario, Mode: "im", Devices: len(r.clients),
		Online: r.countOnline(), Seconds: load.Seconds(),
		Generated: c.Generated, Delivered: c.Delivered, Duplicated: c.Duplicated,
		OutOfOrder: c.OutOfOrder, Redelivered: c.Redelivery, Gaps: c.Gaps,
		Published: c.Published, Resent: c.Resent, Rejected: c.Rejected, Reconnects: c.Reconnects,
		Presence: r.presence.Load(), PresenceOOO: r.presOOO.Load(),
		LatencyMS: percentiles(lat), CatchUpMS: percentiles(cu),
		ConnectSeconds: r.connectAt.Seconds(),
		Warnings:       append([]string(nil), r.warnings...),
	}
	if r.o.Raw {
		rep.Mode = "raw"
	}
	for _, l := range r.links {
		rep.LinkDrops += l.Drops()
	}
	if r.connectAt > 0 {
		rep.ConnectRate = float64(len(r.clients)) / r.connectAt.Seconds()
	}
	if load > 0 {
		dlv := c.Delivered
		if r.deliveredInLoad > 0 {
			dlv = r.deliveredInLoad
		}
		rep.DeliveredPerSec = float64(dlv) / load.Seconds()
	}
	if r.storm != 0 {
		rep.StormSeconds = r.storm.Seconds()
		rep.StormDevices = r.stormN
	}
	if rep.Phase == "done" && load > 0 && r.loadEnd.Load() != 0 {
		rep.Expected = r.acc.Expected()
		rep.Lost = r.acc.Lost()
		rep.Missing = r.acc.Missing(10)
	}
	return rep
}

// measureRSS fills the broker RSS figures of an idle run: the current
// RSS with every device connected, then again after they all left.
func (r *Runner) measureRSS(rep *Report) {
	if r.o.BrokerPID == 0 && r.o.MetricsURL == "" {
		return
	}
	after, err := BrokerRSS(r.o.BrokerPID, r.o.MetricsURL)
	if err != nil {
		rep.Warnings = append(rep.Warnings, "broker RSS: "+err.Error())
		return
	}
	rep.BrokerRSSAfter = after
	rep.BrokerRSSBefore = r.rssBefore
	if r.rssBefore > 0 && len(r.clients) > 0 {
		rep.BrokerRSSPerConn = float64(after-r.rssBefore) / float64(len(r.clients))
	}
}

// BrokerRSS reads a broker's resident set size in bytes from
// /proc/{pid}/status (VmRSS) or from a Prometheus endpoint
// (process_resident_memory_bytes).
func BrokerRSS(pid int, metricsURL string) (int64, error) {
	if pid > 0 {
		f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			return 0, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err != nil {
					return 0, err
				}
				return kb << 10, nil
			}
		}
		return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int64(v), err
		}
	}
	return 0, fmt.Errorf("no process_resident_memory_bytes at %s", metricsURL)
}

// Line renders a one-line live summary for a terminal. In the connect
// phase Seconds is the time since the start.
func (rep *Report) Line() string {
	if rep.Phase == "connect" {
		return fmt.Sprintf("connect t=%5.1fs connected %d/%d  reconn %d drops %d",
			rep.Seconds, rep.Online, rep.Devices, rep.Reconnects, rep.LinkDrops)
	}
	return fmt.Sprintf("%-7s t=%5.1fs online %d/%d  dlv %d (%.0f/s)  p50 %.1fms p99 %.1fms max %.0fms  dup %d ooo %d  reconn %d drops %d",
		rep.Phase, rep.Seconds, rep.Online, rep.Devices, rep.Delivered, rep.DeliveredPerSec,
		rep.LatencyMS.P50, rep.LatencyMS.P99, rep.LatencyMS.Max, rep.Duplicated, rep.OutOfOrder,
		rep.Reconnects, rep.LinkDrops)
}

// Text renders the final report for humans.
func (rep *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s (%s), %d devices, load %.1fs\n", rep.Scenario, rep.Mode, rep.Devices, rep.Seconds)
	fmt.Fprintf(&b, "connect      %.2fs (%.0f/s)\n", rep.ConnectSeconds, rep.ConnectRate)
	fmt.Fprintf(&b, "generated    %d msgs, %d expected deliveries, %d publishes (%d resent, %d rejected)\n",
		rep.Generated, rep.Expected, rep.Published, rep.Resent, rep.Rejected)
	fmt.Fprintf(&b, "delivered    %d (%.0f msg/s)\n", rep.Delivered, rep.DeliveredPerSec)
	fmt.Fprintf(&b, "lost %d  duplicated %d  out-of-order %d  (redelivered and filtered: %d, gaps synced: %d)\n",
		rep.Lost, rep.Duplicated, rep.OutOfOrder, rep.Redelivered, rep.Gaps)
	l := rep.LatencyMS
	fmt.Fprintf(&b, "latency ms   p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (n=%d)\n", l.P50, l.P90, l.P99, l.Max, l.Count)
	c := rep.CatchUpMS
	fmt.Fprintf(&b, "catch-up ms  p50 %.2f  p99 %.2f  max %.2f  (n=%d)\n", c.P50, c.P99, c.Max, c.Count)
	fmt.Fprintf(&b, "reconnects   %d  link drops %d\n", rep.Reconnects, rep.LinkDrops)
	if rep.Presence > 0 {
		fmt.Fprintf(&b, "presence     %d updates, %d out of order\n", rep.Presence, rep.PresenceOOO)
	}
	if rep.StormDevices > 0 || rep.StormSeconds != 0 {
		fmt.Fprintf(&b, "storm        %.3fs for %d devices\n", rep.StormSeconds, rep.StormDevices)
	}
	if rep.BrokerRSSAfter > 0 {
		fmt.Fprintf(&b, "broker RSS   %.1f MiB → %.1f MiB: %.1f kB per connection\n",
			float64(rep.BrokerRSSBefore)/(1<<20), float64(rep.BrokerRSSAfter)/(1<<20), rep.BrokerRSSPerConn/1000)
	}
	if len(rep.Missing) > 0 {
		fmt.Fprintf(&b, "missing      %s\n", strings.Join(rep.Missing, " "))
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(&b, "warning      %s\n", w)
	}
	return b.String()
}

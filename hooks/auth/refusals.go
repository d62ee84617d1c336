package auth

import (
	"github.com/tern-im/tern/internal/codec"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// refusalLogEvery is the period of the refusal log summary.
	refusalLogEvery = time.Minute
	// maxLoggedAddrs bounds the addresses tracked per period; refusals
	// from further addresses are only counted.
	maxLoggedAddrs = 10_000
)

// refusalLog aggregates the INFO lines of refused CONNECTs: per address
// and period, the first refusal is logged in full and the others are
// counted and summed up in one line by flush (each one still goes to
// DEBUG). One attacker thus costs at most two INFO lines a minute.
type refusalLog struct {
	mu    sync.Mutex
	max   int
	addrs map[string]map[string]int // address → reason → refusals after the first
	// untracked counts refusals from addresses past max, by reason.
	untracked map[string]int
}

func newRefusalLog(max int) *refusalLog {
	return &refusalLog{max: max, addrs: map[string]map[string]int{}, untracked: map[string]int{}}
}

// refused logs or counts one refusal from addr; attrs describe it.
func (r *refusalLog) refused(log *slog.Logger, addr, reason string, attrs ...any) {
	r.mu.Lock()
	seen, tracked := r.addrs[addr]
	first := false
	switch {
	case tracked:
		seen[reason]++
	case len(r.addrs) < r.max:
		r.addrs[addr] = map[string]int{}
		first = true
	default:
		r.untracked[reason]++
	}
	r.mu.Unlock()
	if !first {
		log.Debug("connect refused", attrs...)
		return
	}
	log.Info("connect refused", append(attrs, "note", "further refusals from this address are summed up every minute")...)
}

// flush logs one line per address refused more than once since the last
// flush, and one for untracked addresses, and starts a new period.
func (r *refusalLog) flush(log *slog.Logger) {
	r.mu.Lock()
	addrs, untracked := r.addrs, r.untracked
	r.addrs, r.untracked = map[string]map[string]int{}, map[string]int{}
	r.mu.Unlock()
	for addr, reasons := range addrs {
		if n, why := sum(reasons); n > 0 {
			log.Info("connect refusals", "remote", addr, "count", n, "reasons", why)
		}
	}
	if n, why := sum(untracked); n > 0 {
		log.Info("connect refusals from untracked addresses", "count", n, "reasons", why)
	}
}

// sum totals reasons and describes them as "reason=n,…".
func sum(reasons map[string]int) (int, string) {
	n := 0
	parts := make([]string, 0, len(reasons))
	for k, v := range reasons {
		n += v
		parts = append(parts, k+"="+strconv.Itoa(v))
	}
	sort.Strings(parts)
	return n, strings.Join(parts, ",")
}

// clip bounds a client-chosen string (ClientID, user name: up to 64 KiB
// each on the wire) before it reaches a log line.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return codec.CutUTF8(s, max) + "…"
}

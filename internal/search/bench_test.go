package search_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/internal/store"
)

// Corpus shape of the benchmark: messages spread over benchConvs
// conversations, of which the searching user belongs to benchMine; words
// drawn from a Zipf distribution over a synthetic vocabulary (some with
// accents), 6 to 14 per message.
const (
	benchConvs = 2000
	benchMine  = 100
	benchVocab = 20000
)

// benchDir is where the corpus lives: a fresh temporary directory, or,
// when TERN_BENCH_SEARCH_DIR names one, a directory kept between runs
// (one store and index per size), so that query changes can be measured
// without rebuilding a million messages each time; built says the
// corpus there is complete.
func benchDir(b *testing.B, n int) (dir string, built bool) {
	keep := os.Getenv("TERN_BENCH_SEARCH_DIR")
	if keep == "" {
		return b.TempDir(), false
	}
	dir = filepath.Join(keep, strconv.Itoa(n))
	if _, err := os.Stat(filepath.Join(dir, "built")); err == nil {
		return dir, true
	}
	if err := os.RemoveAll(dir); err != nil { // a half-built corpus
		b.Fatal(err)
	}
	return dir, false
}

// benchN is the store size: 10,000 messages unless TERN_BENCH_SEARCH_N
// says otherwise (docs/bench.md ran 1,000,000).
func benchN(b *testing.B) int {
	n := 10000
	if s := os.Getenv("TERN_BENCH_SEARCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1000 {
			b.Fatalf("TERN_BENCH_SEARCH_N=%q: want a number ≥ 1000", s)
		}
		n = v
	}
	return n
}

func vocabulary() []string {
	r := rand.New(rand.NewPCG(1, 2))
	syl := []string{"ka", "lo", "mi", "ré", "tu", "sa", "no", "vé", "di", "pa", "zo", "qué", "fi", "ru", "be", "ça"}
	words := make([]string, benchVocab)
	seen := map[string]bool{}
	for i := range words {
		for {
			var sb strings.Builder
			for range 2 + r.IntN(3) {
				sb.WriteString(syl[r.IntN(len(syl))])
			}
			if w := sb.String(); !seen[w] {
				seen[w] = true
				words[i] = w
				break
			}
		}
	}
	return words
}

// du is the disk space the files under dir take (Badger preallocates
// its value log and memtable files sparsely: their sizes say little).
func du(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error { // best effort
		if err == nil && !info.IsDir() {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// BenchmarkSearch builds a store of benchN messages through the store's
// batch Append, indexes it (reporting events indexed per second and the
// sizes of the store and the index), then runs the search RPC's work per
// op: a query over the user's 100 conversations and the read-back of each
// hit from the store; it reports the p50 and p99 latency of those ops.
func BenchmarkSearch(b *testing.B) {
	n := benchN(b)
	b.Run(fmt.Sprintf("msgs=%d", n), func(b *testing.B) {
		dir, built := benchDir(b, n)
		// The messages span the year before now, evenly, as a store
		// that grew over a year does.
		now := time.Now()
		var clock atomic.Int64
		clock.Store(now.Add(-365 * 24 * time.Hour).UnixMilli())
		step := (365 * 24 * time.Hour).Milliseconds() / int64(n)
		st, err := store.Open(dir, store.Options{Now: func() time.Time { return time.UnixMilli(clock.Add(step)) }})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		words := vocabulary()
		r := rand.New(rand.NewPCG(3, 4))
		zipf := rand.NewZipf(r, 1.1, 1, benchVocab-1)
		var phrases []string
		start := time.Now()
		batch := make([]*im.Append, 0, 256)
		for i := range n {
			k := 6 + r.IntN(9)
			text := make([]string, k)
			for j := range text {
				text[j] = words[zipf.Uint64()]
			}
			c := r.IntN(benchConvs)
			cv := "g:c" + strconv.Itoa(c)
			if c < benchMine && len(phrases) < 50 && i%97 == 0 {
				phrases = append(phrases, text[2]+" "+text[3])
			}
			batch = append(batch, &im.Append{CV: cv, Event: im.Event{T: im.TMsg, From: "u" + strconv.Itoa(r.IntN(50)), B: strings.Join(text, " ")}})
			if len(batch) == cap(batch) || i == n-1 {
				if built {
					batch = batch[:0] // the same texts, already stored
					continue
				}
				if err := st.Append(batch...); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		b.Logf("store: %d messages appended in %s", n, time.Since(start).Round(time.Millisecond))

		idxDir := filepath.Join(dir, "search")
		_, statErr := os.Stat(idxDir)
		indexKept := statErr == nil // else this run indexes from empty
		x, err := search.Open(idxDir, search.Options{Source: st, Batch: 1000, PruneEvery: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		defer x.Close()
		start = time.Now()
		read, err := x.CatchUp(context.Background())
		if err != nil || (read != n && !indexKept) {
			b.Fatalf("CatchUp: %d, %v", read, err)
		}
		took := time.Since(start)
		rate := float64(n) / took.Seconds()
		b.Logf("index: %d events in %s (%.0f events/s)", n, took.Round(time.Millisecond), rate)
		if indexKept {
			b.Logf("index reused from %s: the indexing rate above is not a figure", idxDir)
		}
		if !built && os.Getenv("TERN_BENCH_SEARCH_DIR") != "" {
			if err := os.WriteFile(filepath.Join(dir, "built"), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}

		convs := make([]im.ConvWindow, benchMine)
		for i := range convs {
			convs[i] = im.ConvWindow{CV: "g:c" + strconv.Itoa(i), Window: im.Open}
		}
		for len(phrases) < 5 {
			phrases = append(phrases, words[3]+" "+words[7])
		}
		queries := []string{
			words[0],                    // the commonest word
			words[50],                   // common
			words[2000],                 // rare
			words[15000],                // very rare
			words[1] + " " + words[300], // two words
			`"` + phrases[0] + `"`,      // a phrase
			"from:u7 " + words[120],     // a sender and a word
			strings.ToUpper(words[10]) + " " + words[40], // case
		}
		var lat []time.Duration
		kinds := make([][]time.Duration, len(queries))
		hitsSeen := 0
		if path := os.Getenv("TERN_BENCH_SEARCH_PROFILE"); path != "" {
			// A CPU profile of the queries alone, without the set-up.
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				b.Fatal(err)
			}
			defer func() {
				pprof.StopCPUProfile()
				if err := f.Close(); err != nil {
					b.Error(err)
				}
			}()
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			kind := i % len(queries)
			q := queries[kind]
			if i%len(queries) == 5 {
				q = `"` + phrases[(i/len(queries))%len(phrases)] + `"`
			}
			i++
			terms, err := im.ParseSearch(q)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			hits, _, err := x.Search(im.SearchQuery{Terms: terms, Convs: convs, Max: im.DefaultSearchMax})
			if err != nil {
				b.Fatal(err)
			}
			for _, h := range hits {
				if _, err := st.EventByID(h.ID); err != nil {
					b.Fatal(err)
				}
			}
			lat = append(lat, time.Since(t0))
			kinds[kind] = append(kinds[kind], time.Since(t0))
			hitsSeen += len(hits)
		}
		for k, l := range kinds {
			slices.Sort(l)
			if len(l) > 0 {
				b.Logf("query %d %q: p50 %s, max %s", k, queries[k], l[len(l)/2], l[len(l)-1])
			}
		}
		slices.Sort(lat)
		pct := func(p float64) float64 {
			return float64(lat[min(int(p*float64(len(lat))), len(lat)-1)].Microseconds()) / 1000
		}
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(hitsSeen)/float64(len(lat)), "hits/op")
		b.ReportMetric(rate, "indexed-events/s")
		b.ReportMetric(float64(du(idxDir))/(1<<20), "index-MiB")
		b.ReportMetric(float64(du(dir)-du(idxDir))/(1<<20), "store-MiB")
	})
}

package store

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

func benchMsg(cv string, to []string) *im.Append {
	return &im.Append{CV: cv, To: to, Event: codec.Event{T: codec.TMsg, From: "alice", FD: "p1", CT: "text/plain",
		B: "a typical short chat message, about eighty bytes long, give or take a few"}}
}

// BenchmarkAppend measures the write path: many concurrent senders whose
// appends the sequencer groups into shared commits.
func BenchmarkAppend(b *testing.B) {
	for _, fan := range []int{2, 100, 1000} {
		b.Run(fmt.Sprintf("fanout=%d", fan), func(b *testing.B) {
			s, _ := openTest(b)
			to := make([]string, fan)
			for i := range to {
				to[i] = fmt.Sprintf("u%04d", i)
			}
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32) // 32 × GOMAXPROCS senders
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					cv := "d:a:" + strconv.FormatInt(n.Add(1)%64, 10)
					if fan > 2 {
						cv = "g:big"
					}
					if err := s.Append(benchMsg(cv, to)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// fill appends n messages to conversation cv (stream of user "bob") in
// batches of 256 per call.
func fill(tb testing.TB, s *Store, cv string, n int) {
	tb.Helper()
	batch := make([]*im.Append, 0, 256)
	for i := 0; i < n; i++ {
		batch = append(batch, benchMsg(cv, []string{"alice", "bob"}))
		if len(batch) == cap(batch) || i == n-1 {
			if err := s.Append(batch...); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// benchSize is the store size of the read benchmarks: 200,000 messages by
// default (bounded CI time); TERN_BENCH_MESSAGES=1000000 for the full
// million of the issue.
func benchSize() int {
	if v, err := strconv.Atoi(os.Getenv("TERN_BENCH_MESSAGES")); err == nil && v > 0 {
		return v
	}
	return 200_000
}

// BenchmarkHistoryPage reads random 50-message pages of a conversation
// in a store of benchSize() messages (half in the conversation read, half
// in others) and reports the p99 latency.
func BenchmarkHistoryPage(b *testing.B) {
	s, _ := openTest(b)
	n := benchSize()
	fill(b, s, "g:other", n/2)
	fill(b, s, "g:ops", n/2)
	var lat []time.Duration
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		i = i*6364136223846793005 + 1442695040888963407
		before := 51 + i%uint64(n/2-51)
		t0 := time.Now()
		items, _, err := s.History(im.HistoryQuery{CV: "g:ops", Window: im.Window{From: 1}, Before: before, Max: 50})
		lat = append(lat, time.Since(t0))
		if err != nil || len(items) != 50 {
			b.Fatalf("%d items, %v", len(items), err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(n), "stored")
}

// BenchmarkSyncPage reads a user's 1,000 missed events from the stream.
func BenchmarkSyncPage(b *testing.B) {
	s, _ := openTest(b)
	fill(b, s, "d:alice:bob", 1000)
	b.ReportAllocs()
	for b.Loop() {
		evs, _, err := s.Stream("bob", 0, 1000)
		if err != nil || len(evs) != 1000 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
	}
}

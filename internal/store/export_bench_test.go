package store

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// BenchmarkExport measures an export of a store of n events in 100
// conversations: time per event and the peak heap growth while it runs
// (sampled every millisecond), which must not grow with n: Export reads a
// page per transaction. Run the million with
// go test ./internal/store -run x -bench 'Export/events=1000000' -benchtime 1x.
func BenchmarkExport(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			// The broker's defaults (store.memtable_size, store.block_cache):
			// Badger's own caches are part of the heap and bounded by them.
			s, err := Open(b.TempDir(), Options{MemTableSize: 16 << 20, BlockCacheSize: 32 << 20})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			batch := make([]*im.Append, 0, 256)
			for i := range n {
				batch = append(batch, benchMsg(fmt.Sprintf("g:c%03d", i%100), []string{"alice"}))
				if len(batch) == cap(batch) || i == n-1 {
					if err := s.Append(batch...); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			b.ReportAllocs()
			// A low GC target makes the sampled heap close to the live heap
			// rather than to garbage awaiting collection.
			defer debug.SetGCPercent(debug.SetGCPercent(10))
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				peak := base.HeapAlloc
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					t := time.NewTicker(time.Millisecond)
					defer t.Stop()
					var m runtime.MemStats
					for {
						select {
						case <-stop:
							return
						case <-t.C:
							runtime.ReadMemStats(&m)
							peak = max(peak, m.HeapAlloc)
						}
					}
				}()
				count := 0
				err := s.Export(im.ExportQuery{}, func(ev *im.Event) error {
					count++
					_, err := io.Discard.Write([]byte(ev.B))
					return err
				})
				close(stop)
				wg.Wait()
				if err != nil || count != n {
					b.Fatalf("exported %d of %d: %v", count, n, err)
				}
				b.ReportMetric(float64(peak-base.HeapAlloc)/(1<<20), "peak-heap-MiB")
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(base.HeapAlloc))/(1<<20), "retained-MiB")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}

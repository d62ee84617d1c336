package jetstore

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nuid"
)

// BenchmarkEngineFloor measures what JetStream itself costs on this
// machine beneath any Tern logic, as a floor for the cluster's DM
// throughput (docs/bench.md): closed-loop publishers on a three-node
// embedded cluster (R3, every write fsynced, the log stream's config),
// each waiting for its answer before sending again, of atomic batches of
// one message (the least any replicated append can write) and of ten
// (what a Tern DM writes). It reports batches/s and the process's CPU
// time per batch (three servers and the publishers).
//
//	go test -run '^$' -bench EngineFloor -benchtime 3000x -count 3 ./internal/jetstore
func BenchmarkEngineFloor(b *testing.B) {
	for _, size := range []int{1, 3, 8, 10} {
		for _, pubs := range []int{8, 64} {
			b.Run(fmt.Sprintf("batch=%d/publishers=%d", size, pubs), func(b *testing.B) {
				engineFloor(b, size, pubs)
			})
		}
	}
}

func engineFloor(b *testing.B, size, pubs int) {
	nodes := startCluster(b)
	s := openOn(b, nodes[0], 3, nil, nil)
	payload := make([]byte, 120) // about a stored DM event
	work := make([]chan int, pubs)
	var wg sync.WaitGroup
	for p := range pubs {
		work[p] = make(chan int, 64)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for op := range work[p] {
				batch := make([]msg, size)
				for k := range batch {
					batch[k] = msg{subj: fmt.Sprintf("tern.bench.%d.%d.%d", p, op, k), data: payload}
				}
				if _, err := s.publish(nuid.Next(), batch, func() {}); err != nil {
					b.Errorf("publish: %v", err)
				}
			}
		}()
	}
	op := 0
	cpu0 := processCPU(b)
	start := time.Now()
	for b.Loop() {
		work[op%pubs] <- op
		op++
	}
	for _, w := range work {
		close(w)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "batches/s")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/batch")
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

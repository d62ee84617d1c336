// Package closedloop runs a benchmark's operations from closed-loop
// workers (each sends its next operation once the last one is answered,
// as a device waiting for its acknowledgement does) and reports their
// rate and the process's CPU time per operation, which a busy shared
// machine disturbs far less than the rate.
package closedloop

import (
	"sync"
	"syscall"
	"testing"
	"time"
)

// Run hands b.N operations to workers in turn: op(w, n) is worker w's
// n-th operation of the benchmark (n counts across workers). It reports
// operations per second under rate (e.g. "msgs/s") and the CPU time per
// operation in µs under cpu (e.g. "cpu-us/msg").
func Run(b *testing.B, workers int, rate, cpu string, op func(w, n int)) {
	work := make([]chan int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		work[w] = make(chan int, 64)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work[w] {
				op(w, n)
			}
		}()
	}
	n := 0
	cpu0 := CPUTime()
	start := time.Now()
	for b.Loop() {
		work[n%workers] <- n
		n++
	}
	for _, w := range work {
		close(w)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), rate)
	b.ReportMetric(float64((CPUTime()-cpu0).Microseconds())/float64(b.N), cpu)
}

// CPUTime is the user and system CPU time of this process so far (0 if
// the kernel does not say).
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

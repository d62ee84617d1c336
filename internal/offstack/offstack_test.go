package offstack

import (
	"runtime"
	"sync"
	"testing"
)

// deep uses about n KiB of stack.
//
//go:noinline
func deep(n int) byte {
	var pad [1000]byte
	if n == 0 {
		return pad[0]
	}
	pad[n%len(pad)] = byte(n)
	return deep(n-1) + pad[n%len(pad)]
}

// parked starts count goroutines that each call f and then park, and
// returns how much the stacks in use grew while they were parked.
func parked(t *testing.T, count int, f func()) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for range count {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			f()
			ready.Done()
			<-release
		}()
	}
	ready.Wait()
	runtime.ReadMemStats(&after)
	close(release)
	done.Wait()
	if after.StackInuse < before.StackInuse {
		return 0
	}
	return after.StackInuse - before.StackInuse
}

func TestRunKeepsTheCallersStackSmall(t *testing.T) {
	const count, kib = 200, 64
	var mu sync.Mutex
	var sum byte
	keep := func(b byte) { mu.Lock(); sum += b; mu.Unlock() }
	direct := parked(t, count, func() { keep(deep(kib)) })
	off := parked(t, count, func() { Run(func() { keep(deep(kib)) }) })
	t.Logf("stacks of %d parked goroutines after a %d KiB call: direct %d KiB, through Run %d KiB", count, kib, direct>>10, off>>10)
	if direct < count*kib<<10 {
		t.Fatalf("direct calls grew the stacks by %d KiB, want at least %d KiB: the test does not measure what it means to", direct>>10, count*kib)
	}
	if off*4 > direct {
		t.Fatalf("through Run the parked stacks grew by %d KiB, direct %d KiB: want under a quarter", off>>10, direct>>10)
	}
}

func TestRunWaitsForF(t *testing.T) {
	for i := range 100 {
		got := -1
		Run(func() { got = i })
		if got != i {
			t.Fatalf("after Run: got %d, want %d", got, i)
		}
	}
}

// Package disk watches the free space of the filesystem that holds the
// data directory and keeps a reserve: below it, Guard.Err reports
// ErrLow and every write path refuses to store anything, so Badger never
// writes into a full filesystem (where a write through its memory-mapped
// files ends the process with SIGBUS). The state is measured periodically
// and recovers on its own when space returns.
package disk

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrLow is returned for writes refused while free space is below the
// reserve.
var ErrLow = errors.New("disk: free space below the reserve")

// FreeFunc reports the free space available to the process and the size
// of the filesystem holding dir, in bytes.
type FreeFunc func(dir string) (free, total uint64, err error)

// Statfs is the FreeFunc of the real filesystem.
func Statfs(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %q: %w", dir, err)
	}
	bs := uint64(st.Bsize) //nolint:unconvert // int64 on linux/amd64, int32 elsewhere
	return st.Bavail * bs, st.Blocks * bs, nil
}

// Options configure a Guard.
type Options struct {
	// Dir is a directory on the watched filesystem.
	Dir string
	// MinFree and MinFreePercent set the reserve: the smaller of MinFree
	// bytes and MinFreePercent of the filesystem's size. MinFree 0 turns
	// the guard off.
	MinFree        uint64
	MinFreePercent float64
	// Free measures; nil means Statfs.
	Free FreeFunc
	Log  *slog.Logger
}

// Guard tracks whether the filesystem is below the reserve. Its methods
// are safe for concurrent use; Err costs one atomic load.
type Guard struct {
	o Options
	// low is set below the reserve, and by Trip until a measurement
	// finds enough space again.
	low     atomic.Bool
	reason  atomic.Pointer[string]
	free    atomic.Uint64 // at the last measurement
	mu      sync.Mutex    // serialises Check
	errOnce bool          // a measurement error was logged
}

// New returns a guard; call Check (or Run) to measure.
func New(o Options) *Guard {
	if o.Free == nil {
		o.Free = Statfs
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Guard{o: o}
}

// Err returns ErrLow while writes must be refused, else nil.
func (g *Guard) Err() error {
	if g != nil && g.low.Load() {
		return ErrLow
	}
	return nil
}

// Problem returns why writes are refused, or "".
func (g *Guard) Problem() string {
	if g == nil || !g.low.Load() {
		return ""
	}
	if r := g.reason.Load(); r != nil {
		return *r
	}
	return ErrLow.Error()
}

// Low reports whether writes are refused.
func (g *Guard) Low() bool { return g.Err() != nil }

// Free returns the free bytes found by the last measurement.
func (g *Guard) Free() uint64 {
	if g == nil {
		return 0
	}
	return g.free.Load()
}

// Reserve returns the reserve in bytes for a filesystem of total bytes.
func (g *Guard) Reserve(total uint64) uint64 {
	r := uint64(float64(total) * g.o.MinFreePercent / 100)
	return min(r, g.o.MinFree)
}

// Check measures once and updates the state, logging each transition.
func (g *Guard) Check() {
	if g == nil || g.o.MinFree == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	free, total, err := g.o.Free(g.o.Dir)
	if err != nil {
		// Keep the last state: a transient statfs failure says nothing
		// about the space.
		if !g.errOnce {
			g.o.Log.Warn("disk: cannot measure free space", "dir", g.o.Dir, "error", err)
			g.errOnce = true
		}
		return
	}
	g.errOnce = false
	g.free.Store(free)
	reserve := g.Reserve(total)
	low := free < reserve
	was := g.low.Load()
	if low {
		r := fmt.Sprintf("disk: %d bytes free on the data dir's filesystem, below the reserve of %d", free, reserve)
		g.reason.Store(&r)
	}
	g.low.Store(low)
	switch {
	case low && !was:
		g.o.Log.Error("disk: free space below the reserve; refusing writes", "dir", g.o.Dir, "free", free, "reserve", reserve)
	case !low && was:
		g.o.Log.Info("disk: free space above the reserve again; accepting writes", "dir", g.o.Dir, "free", free, "reserve", reserve)
	}
}

// Trip refuses writes until the next measurement finds enough space: for
// a write that failed with ENOSPC (or EDQUOT) between two measurements.
// Other errors are ignored.
func (g *Guard) Trip(err error) {
	if g == nil || err == nil || !(errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		return
	}
	r := "disk: a write failed: " + err.Error()
	g.reason.Store(&r)
	if !g.low.Swap(true) {
		g.o.Log.Error("disk: write failed for lack of space; refusing writes", "dir", g.o.Dir, "error", err)
	}
}

// Run measures every interval until stop is closed.
func (g *Guard) Run(every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			g.Check()
		}
	}
}

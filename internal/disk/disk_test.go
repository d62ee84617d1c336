package disk

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// TestGuard: the reserve is the smaller of MinFree and the percentage;
// below it Err is ErrLow, it recovers when space returns, a statfs error
// keeps the state, and an ENOSPC write trips it until the next measurement.
func TestGuard(t *testing.T) {
	free, total := uint64(100<<30), uint64(1000<<30)
	var fail error
	g := New(Options{Dir: "/x", MinFree: 1 << 30, MinFreePercent: 5,
		Free: func(string) (uint64, uint64, error) { return free, total, fail }})
	if r := g.Reserve(total); r != 1<<30 {
		t.Fatalf("reserve %d, want 1 GiB (smaller than 5 %%)", r)
	}
	if r := g.Reserve(10 << 30); r != 512<<20 {
		t.Fatalf("reserve of 10 GiB %d, want 5 %% = 512 MiB", r)
	}
	g.Check()
	if g.Err() != nil || g.Problem() != "" {
		t.Fatalf("plenty of space: %v %q", g.Err(), g.Problem())
	}
	free = 1<<30 - 1
	g.Check()
	if !errors.Is(g.Err(), ErrLow) || g.Problem() == "" || g.Free() != free {
		t.Fatalf("below the reserve: %v %q %d", g.Err(), g.Problem(), g.Free())
	}
	fail = fmt.Errorf("statfs: %w", syscall.EIO)
	free = 100 << 30
	g.Check()
	if g.Err() == nil {
		t.Fatal("a failed measurement cleared the state")
	}
	fail = nil
	g.Check()
	if g.Err() != nil {
		t.Fatalf("space returned: %v", g.Err())
	}
	g.Trip(errors.New("some other error"))
	if g.Err() != nil {
		t.Fatal("a non-space error tripped the guard")
	}
	g.Trip(fmt.Errorf("write: %w", syscall.ENOSPC))
	if !errors.Is(g.Err(), ErrLow) {
		t.Fatal("ENOSPC did not trip the guard")
	}
	g.Check()
	if g.Err() != nil {
		t.Fatal("the next measurement with space did not clear the trip")
	}
	var off *Guard
	if off.Err() != nil || New(Options{Free: func(string) (uint64, uint64, error) { return 0, 1, nil }}).Err() != nil {
		t.Fatal("a nil or zero-reserve guard refuses writes")
	}
}

package client

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a reconnect policy: the wait after a failed attempt doubles
// from Min up to Max, and each wait is drawn from its upper half, so that
// devices cut off together do not all come back in the same instant.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff waits 50 ms after a lost link, up to 2 s after repeated
// failures.
var DefaultBackoff = Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}

// Grow returns the wait after one more failed attempt.
func (b Backoff) Grow(prev time.Duration) time.Duration {
	return min(max(2*prev, b.Min), b.Max)
}

// Sleep waits between d/2 and d (nothing for d ≤ 0) and reports false if
// ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package service

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestKeyedLimiter checks the bucket arithmetic with an injected clock:
// the burst, the refill, all-or-nothing allowEach, the off state and the
// sweep of refilled buckets.
func TestKeyedLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	l := newKeyedLimiter(rate.Limit(2), 3, clock) // 3 at once, 2/s
	for i := range 3 {
		if !l.allow("a") {
			t.Fatalf("call %d refused within the burst", i)
		}
	}
	if l.allow("a") {
		t.Fatal("fourth call passed")
	}
	if !l.allow("b") {
		t.Fatal("another key is limited")
	}
	now = now.Add(500 * time.Millisecond) // one token back
	if !l.allow("a") || l.allow("a") {
		t.Fatal("refill is not one token per 500ms")
	}
	// allowEach takes from every key or none.
	if k, ok := l.allowEach([]string{"b", "a"}); ok || k != "a" {
		t.Fatalf("allowEach = %q, %v", k, ok)
	}
	// b refilled to its burst of 3; the refused allowEach took none.
	for i := range 3 {
		if !l.allow("b") {
			t.Fatalf("b call %d refused: the refused allowEach took a token", i)
		}
	}
	off := newKeyedLimiter(0, 0, clock)
	for range 100 {
		if !off.allow("x") {
			t.Fatal("a zero limiter refused")
		}
	}
	// Refilled buckets are swept when the map is full.
	for i := range maxCached {
		l.allow(fmt.Sprint("k", i))
	}
	now = now.Add(time.Hour)
	l.allow("new")
	if n := len(l.m); n != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", n)
	}
}

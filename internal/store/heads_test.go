package store

import (
	"fmt"
	"sync"
	"testing"
)

// TestHeadsFillGuard: a value read from the store before an advance (or a
// reset of the shard) is never stored after it.
func TestHeadsFillGuard(t *testing.T) {
	h := newHeads()
	if _, ok, _ := h.get("bob"); ok {
		t.Fatal("hit in an empty cache")
	}
	_, _, gen := h.get("bob")
	h.advance("bob", 7)
	h.fill("bob", 3, gen) // read before the advance: dropped
	if n, ok, _ := h.get("bob"); !ok || n != 7 {
		t.Fatalf("head = %d, %v; want 7", n, ok)
	}
	h.advance("bob", 5) // never backwards
	if n, _, _ := h.get("bob"); n != 7 {
		t.Fatalf("head = %d after advancing to 5; want 7", n)
	}
	_, _, gen = h.get("carol")
	h.fill("carol", 4, gen)
	if n, ok, _ := h.get("carol"); !ok || n != 4 {
		t.Fatalf("carol = %d, %v; want 4", n, ok)
	}
}

// TestHeadsBounded: a shard that fills up starts over instead of growing.
func TestHeadsBounded(t *testing.T) {
	h := newHeads()
	for i := range headShards * maxHeadsPerShard * 2 {
		h.advance(fmt.Sprint("u", i), 1)
	}
	for i := range h.shards {
		if n := len(h.shards[i].m); n > maxHeadsPerShard {
			t.Fatalf("shard %d holds %d", i, n)
		}
	}
}

// TestUSHeadFresh: USHead, served from the cache, sees every committed
// append as soon as Append returns, with concurrent appenders and readers
// (and a cold cache for half the users).
func TestUSHeadFresh(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	const users, per = 8, 50
	var wg sync.WaitGroup
	for u := range users {
		uid := fmt.Sprint("u", u)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range per {
				a := benchMsg("d:a:"+uid, []string{uid})
				if err := s.Append(a); err != nil {
					t.Error(err)
					return
				}
				head, err := s.USHead(uid)
				if err != nil || head < a.US[0] {
					t.Errorf("%s: head %d after committing us %d (%d): %v", uid, head, a.US[0], i, err)
					return
				}
			}
		}()
		go func() { // a reader racing the appends: never backwards
			defer wg.Done()
			last := uint64(0)
			for range per {
				head, err := s.USHead(uid)
				if err != nil || head < last {
					t.Errorf("%s: head went from %d to %d: %v", uid, last, head, err)
					return
				}
				last = head
			}
		}()
	}
	wg.Wait()
	// A cold cache (a fresh store on the same data) reads the store.
	for u := range users {
		uid := fmt.Sprint("u", u)
		s.heads = newHeads()
		if head, err := s.USHead(uid); err != nil || head != per {
			t.Fatalf("%s: cold head %d, %v; want %d", uid, head, err, per)
		}
	}
}

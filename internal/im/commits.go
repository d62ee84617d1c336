package im

import (
	"hash/maphash"
	"sync/atomic"
)

// CommitStream carries committed appends from the Log to delivery, in
// commit order, split into lanes by recipient: all of one user's events
// go through the same lane, in stream order, so the lanes can be consumed
// in parallel (one delivery worker each) without reordering any device's
// events.
//
// It is bounded, and the bound is enforced where waiting is harmless: an
// appender Reserves a slot before it calls Log.Append (waiting while the
// stream is full, that is while delivery is behind), so the Log's Publish
// after the commit always finds room and never blocks the commit loop,
// and the stream never holds more than its size. The wait happens on the
// appending client's goroutine before its PUBACK: when delivery falls
// behind, acknowledgements slow down.
//
// Call order: Reserve(a), then Log.Append(a), then Release(a) (a no-op
// once the Log published a). Consumers read Lane(i) and call Done once per
// Delivery; an append's slot is free when every lane it went to is done.
// Appends that reserved nothing (the store's own, such as a deleted
// user's leave events) are committed but not published: devices sync
// them.
type CommitStream struct {
	slots chan struct{}
	lanes []chan Delivery
	seed  maphash.Seed
}

// Delivery is the part of one committed append that one lane carries:
// the recipients A.To[i] for i in Idx (A is shared and read-only).
type Delivery struct {
	A   *Append
	Idx []int
}

// NewCommitStream returns a stream of at most n (≥ 1) appends reserved
// or waiting for delivery, split into lanes (≥ 1) lanes.
func NewCommitStream(n, lanes int) *CommitStream {
	n, lanes = max(n, 1), max(lanes, 1)
	s := &CommitStream{slots: make(chan struct{}, n), seed: maphash.MakeSeed()}
	for range lanes {
		// n Deliveries at most per lane: one per outstanding append.
		s.lanes = append(s.lanes, make(chan Delivery, n))
	}
	return s
}

// Reserve takes a slot for a, waiting while the stream is full. It
// returns ErrClosed if stop is closed first.
func (s *CommitStream) Reserve(stop <-chan struct{}, a *Append) error {
	select {
	case s.slots <- struct{}{}:
	default:
		select {
		case s.slots <- struct{}{}:
		case <-stop:
			return ErrClosed
		}
	}
	a.reserved = true
	return nil
}

// Release gives back a's slot when no commit used it.
func (s *CommitStream) Release(a *Append) {
	if a.reserved {
		a.reserved = false
		<-s.slots
	}
}

// Publish queues a committed append (Log implementations call it, in
// commit order) if it reserved a slot, so it never blocks.
func (s *CommitStream) Publish(a *Append) {
	if !a.reserved {
		return
	}
	a.reserved = false
	n := len(s.lanes)
	if n == 1 {
		idx := make([]int, len(a.To))
		for i := range idx {
			idx[i] = i
		}
		s.queue(a, [][]int{idx})
		return
	}
	parts := make([][]int, n)
	for i, uid := range a.To {
		k := int(maphash.String(s.seed, uid) % uint64(n))
		parts[k] = append(parts[k], i)
	}
	s.queue(a, parts)
}

func (s *CommitStream) queue(a *Append, parts [][]int) {
	k := int32(0)
	for _, idx := range parts {
		if len(idx) > 0 {
			k++
		}
	}
	if k == 0 { // no recipients: nothing to deliver
		<-s.slots
		return
	}
	a.lanes.Store(k)
	for i, idx := range parts {
		if len(idx) > 0 {
			s.lanes[i] <- Delivery{A: a, Idx: idx}
		}
	}
}

// Lanes is the number of lanes.
func (s *CommitStream) Lanes() int { return len(s.lanes) }

// Lane is lane i's deliveries, in commit order.
func (s *CommitStream) Lane(i int) <-chan Delivery { return s.lanes[i] }

// Done marks d delivered; the append's slot is freed with its last lane.
func (s *CommitStream) Done(d Delivery) {
	if d.A.lanes.Add(-1) == 0 {
		<-s.slots
	}
}

// Len is how many slots are taken (reserved or queued).
func (s *CommitStream) Len() int { return len(s.slots) }

// Cap is the stream's size.
func (s *CommitStream) Cap() int { return cap(s.slots) }

// laneCount is the per-append count of lanes still delivering it.
type laneCount = atomic.Int32

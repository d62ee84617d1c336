package im

// CommitStream carries committed appends from the Log to delivery, in
// commit order. It is bounded, and the bound is enforced where waiting
// is harmless: an appender Reserves a slot before it calls Log.Append
// (waiting while the stream is full, that is while delivery is behind),
// so the Log's Publish after the commit always finds room and never
// blocks the commit loop, and the stream never grows past its size. The
// wait happens on the appending client's goroutine before its PUBACK:
// when delivery falls behind, acknowledgements slow down.
//
// Call order: Reserve(a), then Log.Append(a), then Release(a) if the
// append was not committed (failed or duplicate: a.Committed() is false).
// The consumer reads C and calls Done once per append it took. Appends
// that reserved nothing (the store's own, such as a deleted user's leave
// events) are committed but not published: devices sync them.
type CommitStream struct {
	slots chan struct{}
	q     chan *Append
}

// NewCommitStream returns a stream of at most n (≥ 1) appends reserved
// or waiting for delivery.
func NewCommitStream(n int) *CommitStream {
	n = max(n, 1)
	return &CommitStream{slots: make(chan struct{}, n), q: make(chan *Append, n)}
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
	if a.reserved {
		a.reserved = false
		s.q <- a
	}
}

// C is the stream of committed appends.
func (s *CommitStream) C() <-chan *Append { return s.q }

// Done frees the slot of an append taken from C.
func (s *CommitStream) Done() { <-s.slots }

// Len is how many slots are taken (reserved or queued).
func (s *CommitStream) Len() int { return len(s.slots) }

// Cap is the stream's size.
func (s *CommitStream) Cap() int { return cap(s.slots) }

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
// Call order: Reserve, then Log.Append, then Release if the append was
// not committed (failed or duplicate: a.Committed() is false). The
// consumer reads C and calls Done once per append it took.
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

// Reserve takes a slot for one append, waiting while the stream is full.
// It returns ErrClosed if stop is closed first.
func (s *CommitStream) Reserve(stop <-chan struct{}) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-stop:
		return ErrClosed
	}
}

// Release gives back a reserved slot that no commit used.
func (s *CommitStream) Release() { <-s.slots }

// Publish queues a committed append (Log implementations call it, in
// commit order). It never blocks when its appender reserved a slot.
func (s *CommitStream) Publish(a *Append) { s.q <- a }

// C is the stream of committed appends.
func (s *CommitStream) C() <-chan *Append { return s.q }

// Done frees the slot of an append taken from C.
func (s *CommitStream) Done() { <-s.slots }

// Len is how many slots are taken (reserved or queued).
func (s *CommitStream) Len() int { return len(s.slots) }

// Cap is the stream's size.
func (s *CommitStream) Cap() int { return cap(s.slots) }

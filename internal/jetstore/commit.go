package jetstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/tern-im/tern/internal/im"
)

// Group commit: this node's appends are committed several to an atomic
// batch, as Badger's sequencer commits several per transaction. An
// append hands its messages to the committer (commit) in id order; the
// committer sends what has queued up as one batch, with at most
// inflightGroups batches awaiting their answer, so while the stream's
// leader works on some, the next group gathers. Each batch costs the
// leader one staged batch, one Raft proposal and one answer however
// many appends it holds.
//
// A batch commits wholly or not at all: when one of its appends loses a
// compare-and-set, all of them get errConflict and retry, each re-reading
// only its own heads. The appends of one batch touch disjoint subjects:
// each holds its stripe locks (conversation, recipients, sender) until
// its commit is answered.

// inflightGroups bounds the batches of one node awaiting their answer.
const inflightGroups = 4

// unit is one append's messages on their way through the committer.
type unit struct {
	b    []msg
	done chan unitResult // buffered: the committer never waits on it
}

type unitResult struct {
	first uint64 // stream sequence of b[0]
	err   error
}

// committer gathers units into batches; see the comment above.
type committer struct {
	in chan *unit
	// freed gets a value when a batch's answer has been handled.
	freed chan struct{}
}

// startCommitter starts the committer goroutine; it ends with s.stop.
func (s *Store) startCommitter() {
	s.group = committer{in: make(chan *unit), freed: make(chan struct{}, inflightGroups)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.gather()
	}()
}

// commit sends b as part of an atomic batch and returns the stream
// sequence of b[0]. unlock is called once b is queued, in order: the
// batches leave in the order their appends called commit. errConflict:
// nothing of b was stored (a compare-and-set failed, no leader took the
// batch, or the connection is down); retry.
func (s *Store) commit(b []msg, unlock func()) (uint64, error) {
	u := &unit{b: b, done: make(chan unitResult, 1)}
	select {
	case s.group.in <- u:
		unlock()
	case <-s.stop:
		unlock()
		return 0, ErrClosed
	}
	r := <-u.done
	return r.first, r.err
}

// gather is the committer's loop: it queues every unit as it comes and,
// while fewer than inflightGroups batches await their answer, sends the
// queued units (up to MaxBatch messages, at least one unit) as one batch
// and lets a goroutine await its answer.
func (s *Store) gather() {
	var queue []*unit
	free := inflightGroups
	for {
		if free > 0 && len(queue) > 0 {
			k, n := 1, len(queue[0].b)
			for k < len(queue) && n+len(queue[k].b) <= s.opts.MaxBatch {
				n += len(queue[k].b)
				k++
			}
			group := queue[:k:k]
			queue = queue[k:]
			free--
			s.send(group, n)
			continue
		}
		select {
		case u := <-s.group.in:
			queue = append(queue, u)
		case <-s.group.freed:
			free++
		case <-s.stop:
			for _, u := range queue {
				u.done <- unitResult{err: ErrClosed}
			}
			return
		}
	}
}

// send publishes group as one atomic batch of n messages and starts the
// goroutine that awaits its answer, which then frees its place.
func (s *Store) send(group []*unit, n int) {
	id := nuid.Next()
	fail := func(err error) {
		for _, u := range group {
			u.done <- unitResult{err: err}
		}
		s.group.freed <- struct{}{}
	}
	i := 0
	var last *nats.Msg
	for _, u := range group {
		for j, m := range u.b {
			i++
			nm := nats.NewMsg(m.subj)
			nm.Data = m.data
			for k, v := range m.hdr {
				nm.Header[k] = v
			}
			if j == 0 {
				nm.Header.Set(hdrBatch, id) // u.b[0] is a head: a lost answer is checked there
			}
			nm.Header.Set(hdrBID, id)
			nm.Header.Set(hdrBSeq, strconv.Itoa(i))
			if m.expect != nil {
				nm.Header.Set(hdrExp, strconv.FormatUint(*m.expect, 10))
			}
			if i == n {
				last = nm
				continue
			}
			if err := s.nc.PublishMsg(nm); err != nil {
				fail(errConflict) // the connection is down: retry
				return
			}
		}
	}
	last.Header.Set(hdrBCom, "1")
	sent := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		end, err := s.answer(last, sent)
		if errors.Is(err, errLost) {
			end, err = s.lost(group[0].b[0].subj, id, n)
		}
		if err != nil {
			fail(err)
			return
		}
		first := end - uint64(n) + 1
		for _, u := range group {
			u.done <- unitResult{first: first}
			first += uint64(len(u.b))
		}
		s.group.freed <- struct{}{}
	}()
	<-sent // the next batch leaves after this one
}

// answer sends the commit message and returns the stream sequence of
// the batch's last message; errConflict when nothing was stored, errLost
// when no answer came. sent is closed once the commit is sent.
func (s *Store) answer(commit *nats.Msg, sent chan struct{}) (uint64, error) {
	reply, err := s.replies.request(s.nc, commit, func() { close(sent) }, s.opts.Timeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return 0, errConflict // no stream leader: nothing stored
	case errors.Is(err, nats.ErrTimeout):
		return 0, errLost
	case err != nil:
		return 0, errConflict
	}
	var ack pubAck
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return 0, fmt.Errorf("jetstore: commit answer: %w", err)
	}
	if e := ack.Error; e != nil {
		switch e.ErrCode {
		case 10071, 10164, 10176, 10210: // wrong last sequence; incomplete; too many in flight
			return 0, errConflict
		case 10008, 10077: // JetStream temporarily unavailable; not current
			return 0, errConflict
		case 10199:
			return 0, im.ErrTooBig
		}
		return 0, fmt.Errorf("jetstore: commit: %s (%d)", e.Desc, e.ErrCode)
	}
	return ack.Seq, nil
}

// lost decides a batch whose answer was lost by its first head, read
// from the leader: it carries the batch id if the batch committed.
func (s *Store) lost(head, id string, n int) (uint64, error) {
	r, err := s.getLeader(head)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	if r.batch != id {
		return 0, errConflict // not committed: retry
	}
	return r.seq + uint64(n) - 1, nil
}

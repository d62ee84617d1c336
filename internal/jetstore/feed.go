package jetstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/tern-im/tern/internal/im"
)

var _ im.Feed = (*Store)(nil)

// feedBatch is how many records one batched get of the feed asks for:
// id index entries from a sequence on, or the events they name. The
// server answers at most 1,024 subjects in one multi-subject get.
const feedBatch = 256

// idFilter is the subject filter of the id index.
const idFilter = "tern.id.>"

// feedPos remembers where the id index entry of the last event After
// returned sits in the log, so that a follower's next call, which starts
// after that event, needs no lookup of it.
type feedPos struct {
	sync.Mutex
	id  ulid.ULID
	seq uint64
}

// After implements im.Feed over the id index (tern.id.>), read in stream
// order, which is commit order cluster-wide (one stream): from the index
// entry of after on. Nodes stamp ids from their own clocks, so in a
// cluster a later commit may carry a lower id than an earlier one: past
// after's entry nothing is skipped by id. Only when after's entry is gone
// (trimmed or expired) and After did not itself return it last does the
// read start over and skip the ids not above after, which in a cluster
// may skip such a late, lower id.
//
// The index entries and the events they name are read in batches
// (batched direct gets: one request per batch, not per message). A
// direct get is answered by any replica of the log, which may not have
// applied the latest commits yet: a replica's log is a prefix of the
// leader's, so the feed may end early, and the follower reads the rest on
// its next call. It never skips an event: an index entry and its event
// commit in one atomic batch, and an event that the replica answering the
// events' get lacks is read one at a time (the leader decides whether it
// is gone, getNamed). When a batched get fails (no replica answers
// direct gets, or a server without them), After reads one record per
// request from the leader, as before.
func (s *Store) After(after ulid.ULID, max int) ([]im.Event, error) {
	if max <= 0 {
		return nil, nil
	}
	start, floor, err := s.feedStart(after)
	if err != nil {
		return nil, err
	}
	var out []im.Event
	var last uint64
	if s.feedBatch > 0 {
		out, last, err = s.afterBatched(start, floor, max)
		if err != nil {
			s.feedFallbacks.Add(1)
			s.lg.Debug("jetstore: batched feed read failed, reading one record at a time", "err", err)
		}
	}
	if s.feedBatch <= 0 || err != nil {
		if out, last, err = s.afterEach(start, floor, max); err != nil {
			return nil, err
		}
	}
	if len(out) > 0 {
		s.feedAt.Lock()
		s.feedAt.id, s.feedAt.seq = out[len(out)-1].ID, last
		s.feedAt.Unlock()
	}
	return out, nil
}

// feedStart is where a read of the feed after after starts: the stream
// sequence past after's index entry, or, when that entry is gone, the
// start of the log with the ids not above floor skipped.
func (s *Store) feedStart(after ulid.ULID) (start uint64, floor ulid.ULID, err error) {
	if after == (ulid.ULID{}) {
		return 1, floor, nil
	}
	s.feedAt.Lock()
	id, seq := s.feedAt.id, s.feedAt.seq
	s.feedAt.Unlock()
	if id == after {
		return seq + 1, floor, nil
	}
	r, err := s.get(idSubj(after))
	switch {
	case err == nil:
		return r.seq + 1, floor, nil
	case errors.Is(err, ErrNotFound):
		return 1, after, nil
	default:
		return 0, floor, err
	}
}

// feedRef is an id index entry: the event's id, the entry's stream
// sequence and the event's subject.
type feedRef struct {
	id      ulid.ULID
	seq     uint64
	subject string
}

// indexRef reads the id index entry stored under subject at stream
// sequence seq; ok is false when subject is not an id entry or its id is
// not above floor.
func indexRef(subject string, seq uint64, data []byte, floor ulid.ULID) (feedRef, bool) {
	id, err := ulid.ParseStrict(subject[strings.LastIndexByte(subject, '.')+1:])
	if err != nil || id.Compare(floor) <= 0 {
		return feedRef{}, false // not an id entry, or not after the position
	}
	return feedRef{id: id, seq: seq, subject: string(data)}, true
}

// afterEach reads the feed one record per request from the stream
// leader (scanFrom, loadEvent); last is the index entry's sequence of
// the last event returned.
func (s *Store) afterEach(start uint64, floor ulid.ULID, max int) (out []im.Event, last uint64, err error) {
	err = s.scanFrom(idFilter, start, func(r rec) error {
		ref, ok := indexRef(r.subj, r.seq, r.data, floor)
		if !ok {
			return nil
		}
		ev, found, err := s.loadEvent(ref.subject)
		if err != nil {
			return err
		}
		if found {
			out, last = append(out, ev), ref.seq
		}
		if len(out) >= max {
			return errStop
		}
		return nil
	})
	return out, last, err
}

// afterBatched reads the feed in batches of direct gets (After): up to
// feedBatch index entries from start on, then the events they name in
// one get, until max events or the end of the answering replica's log.
// An error after some events were read returns those (a prefix).
func (s *Store) afterBatched(start uint64, floor ulid.ULID, max int) (out []im.Event, last uint64, err error) {
	next := start
	for len(out) < max {
		want := min(s.feedBatch, max-len(out))
		ms, err := s.directRange(next, want)
		if err == nil && len(ms) == 0 {
			break
		}
		var refs []feedRef
		var got map[string]*jetstream.RawStreamMsg
		if err == nil {
			for _, m := range ms {
				if deleted(m) {
					continue
				}
				if ref, ok := indexRef(m.Subject, m.Sequence, m.Data, floor); ok {
					refs = append(refs, ref)
				}
			}
			got, err = s.directLast(refs)
		}
		if err != nil {
			if len(out) > 0 {
				return out, last, nil
			}
			return nil, 0, err
		}
		for _, ref := range refs {
			ev, found, err := s.feedEvent(ref.subject, got[ref.subject])
			if err != nil {
				if len(out) > 0 {
					return out, last, nil
				}
				return nil, 0, err
			}
			if found {
				out, last = append(out, ev), ref.seq
			}
		}
		next = ms[len(ms)-1].Sequence + 1
		if len(ms) < want {
			break // the end of the answering replica's log
		}
	}
	return out, last, nil
}

// feedEvent decodes the event m that a direct get returned for subject
// as users see it; an event the answer lacks is read on its own
// (loadEvent: only the leader says it is gone).
func (s *Store) feedEvent(subject string, m *jetstream.RawStreamMsg) (im.Event, bool, error) {
	if m == nil || deleted(m) {
		return s.loadEvent(subject)
	}
	ev, found := s.decodeEvent(subject, m.Data)
	ev.Tombstone()
	return ev, found, nil
}

// directTimeout bounds one batched direct get.
func (s *Store) directTimeout() time.Duration { return min(s.opts.Timeout, 2*time.Second) }

// directRange returns up to n messages of the id index from stream
// sequence start on, in stream order, from any replica (one request);
// none past the end of its log.
func (s *Store) directRange(start uint64, n int) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.directTimeout())
	defer cancel()
	s.feedGets.Add(1)
	msgs, err := jetstreamext.GetBatch(ctx, s.js, LogStream, n,
		jetstreamext.GetBatchSeq(start), jetstreamext.GetBatchSubject(idFilter))
	if err != nil {
		return nil, fmt.Errorf("jetstore: batch get %s from %d: %w", idFilter, start, err)
	}
	return collect(ctx, msgs, n)
}

// directLast returns the last message of each event subject refs name,
// by subject, from any replica (one request per feedBatch subjects); a
// subject the answering replica lacks is missing from the map.
func (s *Store) directLast(refs []feedRef) (map[string]*jetstream.RawStreamMsg, error) {
	got := make(map[string]*jetstream.RawStreamMsg, len(refs))
	for chunk := range slices.Chunk(refs, s.feedBatch) {
		subjects := make([]string, len(chunk))
		for i, ref := range chunk {
			subjects[i] = ref.subject
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.directTimeout())
		s.feedGets.Add(1)
		msgs, err := jetstreamext.GetLastMsgsFor(ctx, s.js, LogStream, subjects)
		var ms []*jetstream.RawStreamMsg
		if err == nil {
			ms, err = collect(ctx, msgs, len(subjects))
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("jetstore: batch get of %d events: %w", len(subjects), err)
		}
		for _, m := range ms {
			got[m.Subject] = m
		}
	}
	return got, nil
}

// collect gathers a batched get's answer: at most n messages (a longer
// answer is the server's error); an answer of none is no messages, one
// cut short by ctx's deadline an error.
func collect(ctx context.Context, msgs iter.Seq2[*jetstream.RawStreamMsg, error], n int) ([]*jetstream.RawStreamMsg, error) {
	var out []*jetstream.RawStreamMsg
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	// The iterator ends quietly when ctx does: that answer may be cut.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(out) > n {
		return nil, fmt.Errorf("jetstore: batch get answered %d messages, asked for %d", len(out), n)
	}
	return out, nil
}

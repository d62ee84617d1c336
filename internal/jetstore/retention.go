package jetstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// TrimStats counts what one trimming pass removed.
type TrimStats struct {
	Pointers  int // stream entries (tern.us)
	Events    int // conversation events (tern.ev), with their id index
	Aux       int // aux events (tern.ax)
	Reactions int // reaction records (tern.rx)
}

// trimSkew is how far past its cutoff a walk reads before it stops:
// events are stamped by the clock of the node that appended them, so the
// log is in ts order only up to the clocks' differences.
const trimSkew = time.Minute

// trimChunk bounds the deletes between two checks of the lease and of
// the holds, and the events a pass holds in memory.
const trimChunk = 256

// errLostLease stops a pass whose node no longer holds the trimmer lease.
var errLostLease = errors.New("jetstore: trim: the lease went to another node")

// trimRun is what one pass reports to and asks of its caller.
type trimRun struct {
	// guard, when set, is asked before each chunk of deletes; false ends
	// the pass (another node holds the lease now).
	guard func() bool
	// forget and att, when set, are told what left the store.
	forget im.Forgetter
	att    func(fid string, id ulid.ULID)
	// quit, when closed, ends the pass (ErrClosed).
	quit <-chan struct{}
	// cur, when set, is where the previous pass of this node left the
	// default's walks of events and aux events; nil: from the start.
	cur *trimCursor
}

// trimCursor remembers, between the passes of one lease holder, where
// the default's walks of events and aux events may start again: past
// what an earlier pass removed or kept for a hold or a conversation's own
// retention (those conversations are walked on their own). It is valid
// for one set of holds and retentions: gen names them, and a change
// (a hold lifted, a retention changed) starts the walks from the
// beginning again.
type trimCursor struct {
	gen  string
	from map[string]uint64 // walk filter → stream sequence
}

// Trim removes what is older than cutoff (the server default; zero:
// none) or than its conversation's own retention (SetRetention), measured
// by the store's clock: stream entries (raising each user's stream floor
// first, so a reader gets ErrTrimmed rather than a silent hole, and by
// the default only), conversation and aux events with their id and edit
// index entries, and reactions (by the default only). Events under a
// legal hold are kept. Heads, markers, memberships and conversation lists
// stay, so positions are never reused.
//
// It does not scan the log: events are appended in time order, so each
// walk starts at the oldest message still stored under its subjects (the
// server skips what was removed) and stops at the first one younger than
// the cutoff (plus trimSkew). Each conversation with a retention of its
// own is walked on its own subjects; the default's walks skip it. Trim
// starts every walk from the beginning (so it reads again what holds
// keep); the Trimmer's passes go on where the previous one stopped
// (trimCursor). It is idempotent. In a cluster one node at a time runs
// it, on a timer (Trimmer).
func (s *Store) Trim(cutoff time.Time) (TrimStats, error) {
	return s.trim(cutoff, trimRun{})
}

func (s *Store) trim(cutoff time.Time, run trimRun) (TrimStats, error) {
	var st TrimStats
	rets, err := s.retentions()
	if err != nil {
		return st, err
	}
	def, cutoffOf := im.Cutoffs(s.now(), cutoff, rets)
	if def == 0 && len(rets) == 0 {
		return st, nil
	}
	skew := trimSkew.Milliseconds()
	if def > 0 {
		from := func(string) uint64 { return 1 }
		moved := func(string, uint64) {}
		if c := run.cur; c != nil {
			_, rev, err := s.readHolds()
			if err != nil {
				return st, err
			}
			gen := fmt.Sprint(rev, rets) // fmt prints maps in key order
			if gen != c.gen || c.from == nil {
				c.gen, c.from = gen, map[string]uint64{}
			}
			from = func(f string) uint64 { return max(c.from[f], 1) }
			moved = func(f string, seq uint64) { c.from[f] = seq }
		}
		if err := s.trimPointers(def, def+skew, run, &st); err != nil {
			return st, err
		}
		for _, w := range []struct {
			filter string
			fn     func(string, uint64, func(string) int64, int64, trimRun, *TrimStats) (uint64, error)
		}{{"tern.ax.>", s.trimAux}, {"tern.ev.>", s.trimEvents}} {
			next, err := w.fn(w.filter, from(w.filter), func(cv string) int64 {
				if _, own := rets[cv]; own {
					return 0 // walked on its own below
				}
				return def
			}, def+skew, run, &st)
			if err != nil {
				return st, err
			}
			moved(w.filter, next)
		}
		if err := s.trimReactions(def, def+skew, run, &st); err != nil {
			return st, err
		}
	}
	// Conversations with a retention of their own: their own subjects.
	for cv := range rets {
		c := cutoffOf(cv)
		if c <= 0 {
			continue
		}
		own := func(string) int64 { return c }
		if _, err := s.trimAux(subj("ax", part(cv), tok(cv), "*"), 1, own, c+skew, run, &st); err != nil {
			return st, err
		}
		if _, err := s.trimEvents(subj("ev", part(cv), tok(cv), "*"), 1, own, c+skew, run, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// walk calls fn with each message under filter from stream sequence
// from on, in stream order, read from the stream leader (tombstones
// included), until fn returns stop or quit is closed. It returns the
// sequence of the message fn stopped at (or one past the last).
func (s *Store) walk(filter string, from uint64, quit <-chan struct{}, fn func(m *jetstream.RawStreamMsg, ts int64) (stop bool, err error)) (uint64, error) {
	next := max(from, 1)
	for {
		select {
		case <-quit:
			return next, ErrClosed
		default:
		}
		if s.closed.Load() {
			return next, ErrClosed
		}
		var m *jetstream.RawStreamMsg
		err := s.do(func(ctx context.Context) (err error) {
			m, err = s.leaderGet(ctx, LogStream, msgGetReq{Seq: next, NextFor: filter})
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return next, nil
		}
		if err != nil {
			return next, fmt.Errorf("jetstore: walk %s: %w", filter, err)
		}
		var ts int64
		if m.Header != nil {
			ts, _ = strconv.ParseInt(m.Header.Get(hdrTS), 10, 64) // absent: 0
		}
		stop, err := fn(m, ts)
		if err != nil || stop {
			return m.Sequence, err
		}
		next = m.Sequence + 1
	}
}

// deleted reports whether m is a tombstone (a cleared record).
func deleted(m *jetstream.RawStreamMsg) bool {
	return m.Header != nil && m.Header.Get(hdrDel) != ""
}

// guarded asks run's guard before a chunk of deletes.
func guarded(run trimRun) error {
	if run.guard != nil && !run.guard() {
		return errLostLease
	}
	return nil
}

// purgeBelow removes the messages under filter below stream sequence seq
// (0: all of them), in one request however many there are.
func (s *Store) purgeBelow(filter string, seq uint64) error {
	err := s.do(func(ctx context.Context) error {
		return s.log.Purge(ctx, jetstream.WithPurgeSubject(filter), jetstream.WithPurgeSequence(seq))
	})
	if err != nil {
		return fmt.Errorf("jetstore: trim %s: %w", filter, err)
	}
	return nil
}

// deleteSeq removes one message; one already gone is no error.
func (s *Store) deleteSeq(seq uint64) error {
	err := s.do(func(ctx context.Context) error { return s.log.DeleteMsg(ctx, seq) })
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("jetstore: trim: %w", err)
	}
	return nil
}

// trimPointers removes the stream entries older than cutoff, user by
// user: a user's entries are in the log in us order (each append
// advances the head by compare-and-set), so one purge below the last old
// entry removes them all, after the floor was raised past it.
func (s *Store) trimPointers(cutoff, stopAt int64, run trimRun, st *TrimStats) error {
	type cut struct {
		floor, below uint64
		n            int
	}
	cuts := map[string]*cut{}
	flush := func() error {
		if len(cuts) == 0 {
			return nil
		}
		if err := guarded(run); err != nil {
			return err
		}
		for uid, c := range cuts {
			cur, _, err := s.getU64(floorSubj(uid))
			if err != nil {
				return err
			}
			if c.floor > cur {
				if err := s.putRecord(floorSubj(uid), []byte(strconv.FormatUint(c.floor, 10))); err != nil {
					return err
				}
			}
			if err := s.purgeBelow(subj("us", part(uid), tok(uid), "*"), c.below); err != nil {
				return err
			}
			st.Pointers += c.n
		}
		clear(cuts)
		return nil
	}
	_, err := s.walk("tern.us.>", 1, run.quit, func(m *jetstream.RawStreamMsg, ts int64) (bool, error) {
		if ts >= stopAt {
			return true, nil
		}
		if ts == 0 || ts >= cutoff {
			return false, nil
		}
		f := strings.Split(m.Subject, ".") // tern.us.<p>.<uid>.<us>
		if len(f) != 5 {
			return false, nil
		}
		uid, err := untok(f[3])
		if err != nil {
			return false, err
		}
		us, err := strconv.ParseUint(f[4], 10, 64)
		if err != nil {
			return false, fmt.Errorf("jetstore: pointer %s: %w", m.Subject, err)
		}
		c := cuts[uid]
		if c == nil {
			c = &cut{}
			cuts[uid] = c
		}
		c.floor, c.below = max(c.floor, us+1), max(c.below, m.Sequence+1)
		c.n++
		if len(cuts) >= trimChunk {
			return false, flush()
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// trimAux removes the aux events under filter, from stream sequence
// from, older than their conversation's cutoff (0: none): like stream
// entries, a conversation's aux events are in the log in order, so one
// purge per conversation. It returns where the next walk may start: the
// stop, or the first event it kept only because it was not old enough.
func (s *Store) trimAux(filter string, from uint64, cutoffOf func(string) int64, stopAt int64, run trimRun, st *TrimStats) (uint64, error) {
	type cut struct {
		below uint64
		n     int
	}
	cuts := map[string]*cut{}
	flush := func() error {
		if len(cuts) == 0 {
			return nil
		}
		if err := guarded(run); err != nil {
			return err
		}
		for cv, c := range cuts {
			if err := s.purgeBelow(subj("ax", part(cv), tok(cv), "*"), c.below); err != nil {
				return err
			}
			st.Aux += c.n
		}
		clear(cuts)
		return nil
	}
	next, err := s.walkExpired(filter, from, cutoffOf, stopAt, run, func(m *jetstream.RawStreamMsg, cv string) error {
		k := cuts[cv]
		if k == nil {
			k = &cut{}
			cuts[cv] = k
		}
		k.below = max(k.below, m.Sequence+1)
		k.n++
		if len(cuts) >= trimChunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return next, err
	}
	return next, flush()
}

// walkExpired walks the conversation records under filter (subjects
// tern.<kind>.<p>.<cv>.<n>), from stream sequence from until one stamped
// at or after stopAt, and calls fn for each older than its conversation's
// cutoff (cutoffOf; 0: none). It returns where the next walk may start:
// the stop, or the first record it passed over only because it was not
// old enough.
func (s *Store) walkExpired(filter string, from uint64, cutoffOf func(string) int64, stopAt int64, run trimRun, fn func(m *jetstream.RawStreamMsg, cv string) error) (uint64, error) {
	young := uint64(0) // the first record kept for its age
	next, err := s.walk(filter, from, run.quit, func(m *jetstream.RawStreamMsg, ts int64) (bool, error) {
		if ts >= stopAt {
			return true, nil
		}
		f := strings.Split(m.Subject, ".")
		if len(f) != 5 {
			return false, nil
		}
		cv, err := untok(f[3])
		if err != nil {
			return false, err
		}
		c := cutoffOf(cv)
		if c > 0 && ts >= c && young == 0 {
			young = m.Sequence
		}
		if ts == 0 || c <= 0 || ts >= c {
			return false, nil
		}
		return false, fn(m, cv)
	})
	if err == nil && young != 0 {
		next = min(next, young)
	}
	return next, err
}

// trimEvents removes the conversation events under filter, from stream
// sequence from, older than their conversation's cutoff (0: none) and not
// under a legal hold, with their id and edit index entries, trimChunk at
// a time; before each chunk the holds are read again, so a hold placed
// during a pass protects what the pass had not removed yet. A message a
// delete rewrote sits at the delete's place in the log: it goes once the
// walk reaches it. It returns where the next walk may start, as trimAux.
func (s *Store) trimEvents(filter string, from uint64, cutoffOf func(string) int64, stopAt int64, run trimRun, st *TrimStats) (uint64, error) {
	type cand struct {
		subject string
		ev      im.Event
	}
	var chunk []cand
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if err := guarded(run); err != nil {
			return err
		}
		hs, _, err := s.readHolds()
		if err != nil {
			return err
		}
		var gone []im.Forgotten
		for _, c := range chunk {
			ev := &c.ev
			if im.HeldBy(hs, ev) {
				continue
			}
			// By subject: a delete may have rewritten it meanwhile.
			index := []string{c.subject, idSubj(ev.ID)}
			if ev.T == im.TEdit && ev.Tgt != nil {
				index = append(index, editSubj(*ev.Tgt, ev.ID))
			}
			for _, sub := range index {
				if err := s.purgeBelow(sub, 0); err != nil {
					return err
				}
			}
			st.Events++
			gone = append(gone, im.Forgotten{CV: ev.CV, ID: ev.ID, Att: ev.Att})
			if run.att != nil {
				for _, a := range ev.Att {
					run.att(a.FID, ev.ID)
				}
			}
		}
		chunk = chunk[:0]
		if len(gone) > 0 && run.forget != nil {
			run.forget.Forget(gone)
		}
		return nil
	}
	next, err := s.walkExpired(filter, from, cutoffOf, stopAt, run, func(m *jetstream.RawStreamMsg, _ string) error {
		var ev codec.Event
		if err := codec.UnmarshalStored(m.Data, &ev); err != nil {
			return nil // unreadable: kept (counted when read)
		}
		chunk = append(chunk, cand{subject: m.Subject, ev: ev})
		if len(chunk) >= trimChunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return next, err
	}
	return next, flush()
}

// trimReactions removes reaction records (and cleared ones) older than
// cutoff.
func (s *Store) trimReactions(cutoff, stopAt int64, run trimRun, st *TrimStats) error {
	var seqs []uint64
	flush := func() error {
		if len(seqs) == 0 {
			return nil
		}
		if err := guarded(run); err != nil {
			return err
		}
		for _, seq := range seqs {
			if err := s.deleteSeq(seq); err != nil {
				return err
			}
		}
		st.Reactions += len(seqs)
		seqs = seqs[:0]
		return nil
	}
	_, err := s.walk("tern.rx.>", 1, run.quit, func(m *jetstream.RawStreamMsg, ts int64) (bool, error) {
		if ts >= stopAt {
			return true, nil
		}
		if !deleted(m) && (ts == 0 || ts >= cutoff) {
			return false, nil
		}
		seqs = append(seqs, m.Sequence)
		if len(seqs) >= trimChunk {
			return false, flush()
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	return flush()
}

package jetstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

var _ im.Compliance = (*Store)(nil)

// Compliance records (PROTOCOL §16) live in the bucket tern-compliance:
//
//	holds          every legal hold: one JSON list, replaced by
//	               compare-and-set (holds are few: an investigation each)
//	r.<cv>         a conversation's own retention, in ms
//	trim-lease     which node runs the trimmer, until when (trimmer.go)
//
// The holds are one key so that Held is one read from the bucket's
// leader: a hold set through one node is seen by a delete on any other
// node once AddHold returned.
const (
	bucketCompliance = "tern-compliance"
	keyHolds         = "holds"
	keyLease         = "trim-lease"
)

// maxHoldsBytes bounds the encoded hold list (one KV value; NATS's
// default max_payload is 1 MiB): at least 400 holds with the longest
// reasons. A variable for the tests.
var maxHoldsBytes = 512 << 10

// holdList is the decoded hold list with the KV revision it was read at
// (Store.comp).
type holdList struct {
	mu    sync.Mutex
	rev   uint64
	holds []im.Hold
}

// readHolds reads the hold list from the bucket's leader (one request);
// it decodes it only when its revision changed.
func (s *Store) readHolds() ([]im.Hold, uint64, error) {
	var e kvEntry
	err := s.do(func(ctx context.Context) (err error) {
		e, err = s.kvLeaderGet(ctx, bucketCompliance, keyHolds)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("jetstore: holds: %w", err)
	}
	c := &s.comp
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rev != e.Revision() {
		var hs []im.Hold
		if err := json.Unmarshal(e.Value(), &hs); err != nil {
			return nil, 0, fmt.Errorf("jetstore: holds: %w", err)
		}
		c.rev, c.holds = e.Revision(), hs
	}
	return c.holds, e.Revision(), nil
}

// updateHolds applies fn to the hold list by compare-and-set, retrying
// when another node changed it in between.
func (s *Store) updateHolds(fn func([]im.Hold) ([]im.Hold, error)) error {
	kv := s.kv[bucketCompliance]
	for attempt := range maxAttempts {
		if attempt > 0 && !s.backoff(attempt) {
			return ErrClosed
		}
		hs, rev, err := s.readHolds()
		if err != nil {
			return err
		}
		next, err := fn(slices.Clone(hs))
		if err != nil {
			return err
		}
		v, err := json.Marshal(next)
		if err != nil {
			return err
		}
		if len(v) > maxHoldsBytes {
			return ErrTooManyHolds
		}
		err = s.do(func(ctx context.Context) error {
			if rev == 0 {
				_, err := kv.Create(ctx, keyHolds, v)
				return err
			}
			_, err := kv.Update(ctx, keyHolds, v, rev)
			return err
		})
		if err == nil {
			return nil
		}
		if !isWrongSeq(err) {
			return fmt.Errorf("jetstore: holds: %w", err)
		}
	}
	return fmt.Errorf("%w: holds", ErrContention)
}

// AddHold stores h with a new id (a ULID) and creation time.
func (s *Store) AddHold(h im.Hold) (im.Hold, error) {
	h.ID, h.Created = ulid.Make().String(), s.now().UnixMilli()
	return h, s.updateHolds(func(hs []im.Hold) ([]im.Hold, error) { return append(hs, h), nil })
}

// RemoveHold removes hold id (im.ErrNotFound when there is none).
func (s *Store) RemoveHold(id string) (im.Hold, error) {
	var gone im.Hold
	err := s.updateHolds(func(hs []im.Hold) ([]im.Hold, error) {
		i := slices.IndexFunc(hs, func(h im.Hold) bool { return h.ID == id })
		if i < 0 {
			return nil, ErrNotFound
		}
		gone = hs[i]
		return slices.Delete(hs, i, i+1), nil
	})
	return gone, err
}

// Holds lists every hold, oldest first.
func (s *Store) Holds() ([]im.Hold, error) {
	hs, _, err := s.readHolds()
	return slices.Clone(hs), err
}

// Held reports whether a hold covers ev, reading the holds from the
// bucket's leader.
func (s *Store) Held(ev *im.Event) (bool, error) {
	hs, _, err := s.readHolds()
	return im.HeldBy(hs, ev), err
}

func retentionKey(cv string) string { return "r." + tok(cv) }

// SetRetention sets cv's own retention; 0 removes it (the server default
// applies).
func (s *Store) SetRetention(cv string, d time.Duration) error {
	kv := s.kv[bucketCompliance]
	err := s.do(func(ctx context.Context) error {
		if d <= 0 {
			return kv.Delete(ctx, retentionKey(cv))
		}
		_, err := kv.Put(ctx, retentionKey(cv), []byte(strconv.FormatInt(d.Milliseconds(), 10)))
		return err
	})
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("jetstore: retention of %s: %w", cv, err)
	}
	return nil
}

// Retention is cv's own retention, 0 when it follows the server default.
func (s *Store) Retention(cv string) (time.Duration, error) {
	var e kvEntry
	err := s.do(func(ctx context.Context) (err error) {
		e, err = s.kvLeaderGet(ctx, bucketCompliance, retentionKey(cv))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("jetstore: retention of %s: %w", cv, err)
	}
	return parseRetention(e.Value())
}

func parseRetention(v []byte) (time.Duration, error) {
	ms, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || ms < 0 || ms > int64(math.MaxInt64/time.Millisecond) {
		return 0, fmt.Errorf("jetstore: bad retention record %q", v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// retentions reads every conversation's own retention (the keys r.*)
// from the bucket's stream leader: a retention set through any node is
// in the next pass.
func (s *Store) retentions() (map[string]time.Duration, error) {
	prefix := "$KV." + bucketCompliance + ".r."
	out := map[string]time.Duration{}
	for next := uint64(1); ; {
		var m *jetstream.RawStreamMsg
		err := s.do(func(ctx context.Context) (err error) {
			m, err = s.leaderGet(ctx, "KV_"+bucketCompliance, msgGetReq{Seq: next, NextFor: prefix + "*"})
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("jetstore: retentions: %w", err)
		}
		next = m.Sequence + 1
		if m.Header != nil && m.Header.Get("KV-Operation") != "" {
			continue // deleted or purged
		}
		cv, err := untok(strings.TrimPrefix(m.Subject, prefix))
		if err != nil {
			return nil, err
		}
		d, err := parseRetention(m.Data)
		if err != nil {
			return nil, err
		}
		if d > 0 {
			out[cv] = d
		}
	}
}

// Export calls fn with every stored conversation event q selects, whole
// (bodies of held deleted messages included), conversation by
// conversation in seq order. It reads one event at a time from the
// stream leader, so memory does not grow with the number of events
// (only with the number of conversations listed and, per conversation,
// of its messages deleted under a hold; see exportConv). fn must not
// keep the event.
func (s *Store) Export(q im.ExportQuery, fn func(*im.Event) error) error {
	convs, err := s.exportConvs(q)
	if err != nil {
		return err
	}
	for _, c := range convs {
		if err := s.exportConv(c.cv, c.w, q, fn); err != nil {
			return err
		}
	}
	return nil
}

type exportConv struct {
	cv string
	w  im.Window
}

// exportConvs lists the conversations an export reads, in cv order: q.CV;
// q.UID's DMs and every group they are or were in (within their
// membership); or every conversation.
func (s *Store) exportConvs(q im.ExportQuery) ([]exportConv, error) {
	var out []exportConv
	switch {
	case q.UID != "":
		cvs, err := s.UserConvs(q.UID)
		if err != nil {
			return nil, err
		}
		for _, cv := range cvs {
			if !strings.HasPrefix(cv, "g:") {
				out = append(out, exportConv{cv: cv, w: im.Open})
			}
		}
		// Membership records stay after a member leaves (with To set).
		err = s.scan(subj("mb", "*", tok(q.UID)), func(r rec) error {
			f := strings.Split(r.subj, ".") // tern.mb.<gid>.<uid>
			if len(f) != 4 {
				return nil
			}
			gid, err := untok(f[2])
			if err != nil {
				return err
			}
			var m im.Member
			if err := json.Unmarshal(r.data, &m); err != nil {
				return fmt.Errorf("jetstore: %s: %w", r.subj, err)
			}
			out = append(out, exportConv{cv: "g:" + gid, w: m.Window()})
			return nil
		})
		if err != nil {
			return nil, err
		}
	case q.CV != "":
		out = append(out, exportConv{cv: q.CV, w: im.Open})
	default:
		// Every conversation has a head record.
		err := s.scan("tern.hc.>", func(r rec) error {
			cv, err := lastToken(r.subj)
			if err != nil {
				return err
			}
			out = append(out, exportConv{cv: cv, w: im.Open})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if q.CV != "" {
		out = slices.DeleteFunc(out, func(c exportConv) bool { return c.cv != q.CV })
	}
	slices.SortFunc(out, func(a, b exportConv) int { return strings.Compare(a.cv, b.cv) })
	return slices.CompactFunc(out, func(a, b exportConv) bool { return a.cv == b.cv }), nil
}

// exportStep, when set (tests), is called between exportConv's two
// walks (seq 0) and after each event the second walk emits in order.
var exportStep func(cv string, seq uint64)

// exportConv calls fn with cv's stored events inside window w and q's
// time range, in seq order, each once. A message deleted while the export
// runs comes in its place as it was, or, when the walk had already
// passed its place without it, after the others as it is now.
//
// The events of a conversation are in the log in seq order (each append
// advances the head by compare-and-set), except the messages and edits
// a delete rewrote (as tombstones, or marked deleted under a hold),
// which moved to the delete's place. So a first walk over cv's events
// in stream order notes the seqs that come out of order (the rewritten
// ones: memory grows only with them); the second walk emits in stream
// order and slips each of those in at its seq. Walks skip what retention
// removed on the server's side, whatever its length.
func (s *Store) exportConv(cv string, w im.Window, q im.ExportQuery, fn func(*im.Event) error) error {
	filter := subj("ev", part(cv), tok(cv), "*")
	seqOf := func(subject string) (uint64, error) {
		n, err := strconv.ParseUint(subject[strings.LastIndexByte(subject, '.')+1:], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("jetstore: event subject %s: %w", subject, err)
		}
		return n, nil
	}
	var late []uint64 // seqs met after a larger one: rewritten
	var top uint64
	err := s.scan(filter, func(r rec) error {
		n, err := seqOf(r.subj)
		if err != nil {
			return err
		}
		if n < top {
			late = append(late, n)
		}
		top = max(top, n)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(late)
	if exportStep != nil {
		exportStep(cv, 0)
	}
	isLate := func(n uint64) bool { _, ok := slices.BinarySearch(late, n); return ok }
	pending := late // the rewritten events not emitted yet
	errDone := errors.New("done")
	emit := func(n uint64, data []byte) error {
		if !w.Contains(n) {
			if w.To != 0 && n > w.To {
				return errDone
			}
			return nil
		}
		var ev codec.Event
		if err := codec.UnmarshalStored(data, &ev); err != nil {
			s.bad.Add(1)
			s.lg.Error("jetstore: unreadable event", "cv", cv, "seq", n, "err", err)
			return nil
		}
		if q.Until > 0 && ev.TS >= q.Until {
			return errDone // ts never decreases with seq in a conversation
		}
		if q.Since > 0 && ev.TS < q.Since {
			return nil
		}
		return fn(&ev)
	}
	// emitLate emits the rewritten events below n.
	emitLate := func(n uint64) error {
		for len(pending) > 0 && pending[0] < n {
			k := pending[0]
			pending = pending[1:]
			r, err := s.get(eventSubj(cv, k))
			if errors.Is(err, ErrNotFound) {
				continue // trimmed or expired meanwhile
			}
			if err != nil {
				return err
			}
			if err := emit(k, r.data); err != nil {
				return err
			}
		}
		return nil
	}
	// done is the highest seq emitted in order; gaps are the seqs below
	// it that the second walk did not meet (trimmed, expired, or moved by
	// a delete made since the first walk), as ascending ranges.
	var done uint64
	var gaps [][2]uint64
	// missed reports whether n lies in a gap, and takes it out.
	missed := func(n uint64) bool {
		i, _ := slices.BinarySearchFunc(gaps, n, func(g [2]uint64, n uint64) int {
			if g[1] < n {
				return -1
			}
			if g[0] > n {
				return 1
			}
			return 0
		})
		if i == len(gaps) || gaps[i][0] > n || gaps[i][1] < n {
			return false
		}
		g := gaps[i]
		gaps = slices.Delete(gaps, i, i+1)
		if n+1 <= g[1] {
			gaps = slices.Insert(gaps, i, [2]uint64{n + 1, g[1]})
		}
		if n > 0 && g[0] <= n-1 {
			gaps = slices.Insert(gaps, i, [2]uint64{g[0], n - 1})
		}
		return true
	}
	err = s.scan(filter, func(r rec) error {
		n, err := seqOf(r.subj)
		if err != nil {
			return err
		}
		if isLate(n) {
			return nil // emitted in its place
		}
		if n <= done {
			// A delete made during the export moved it here. Emitted in
			// its place already (as it was then), unless the walk had
			// passed its place without meeting it: then here, as it is
			// now, rather than not at all.
			if !missed(n) {
				return nil
			}
			return emit(n, r.data)
		}
		if err := emitLate(n); err != nil {
			return err
		}
		if n > done+1 {
			gaps = append(gaps, [2]uint64{done + 1, n - 1})
		}
		done = n
		if err := emit(n, r.data); err != nil {
			return err
		}
		if exportStep != nil {
			exportStep(cv, n)
		}
		return nil
	})
	if err == nil {
		err = emitLate(^uint64(0))
	}
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

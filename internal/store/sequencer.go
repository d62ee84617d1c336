package store

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// DedupeTTL is how long a (uid, did, cmid) dedupe entry is kept: PROTOCOL
// §2 asks for at least 7 days.
const DedupeTTL = 8 * 24 * time.Hour

// maxBatch is how many appends the sequencer commits together at most.
const maxBatch = 256

// maxCounters bounds each in-memory counter map of the sequencer (convSeq,
// auxSeq, userUS): past it the map starts over between two commits. The
// counters are persisted with every commit, so a dropped one is reloaded
// from its key when next used and never goes backwards. A variable for
// tests.
var maxCounters = 100_000

// request is one Append on its way through the sequencer.
type request struct {
	a    *im.Append
	err  error
	done chan struct{}
}

// sequencer is the single writer of the IM keyspace: one goroutine
// allocates ids and positions from in-memory counters (loaded lazily from
// the store) and commits many appends per Badger transaction.
type sequencer struct {
	s       *Store
	in      chan *request
	commits *im.CommitStream
	stop    chan struct{}
	done    chan struct{}
	convSeq map[string]uint64
	auxSeq  map[string]uint64
	userUS  map[string]uint64
	// listed are conversation-list keys known to be stored: every DM
	// would otherwise rewrite its two (idempotent) keys into the memtable.
	// Only the sequencer writes them, so the set cannot go stale; it is
	// dropped whole when large.
	listed map[string]bool
	// dirty are the counters advanced by the appends of the open
	// transaction: written once, with them, when it commits.
	dirty   map[string]uint64
	entropy *ulid.MonotonicEntropy
	lastMS  uint64
	now     func() time.Time
}

func newSequencer(s *Store, now func() time.Time, commits *im.CommitStream) *sequencer {
	q := &sequencer{
		s: s, in: make(chan *request), stop: make(chan struct{}), done: make(chan struct{}),
		entropy: ulid.Monotonic(rand.Reader, 0), now: now, commits: commits,
	}
	q.reset()
	go q.run()
	return q
}

func (q *sequencer) reset() {
	q.convSeq = map[string]uint64{}
	q.auxSeq = map[string]uint64{}
	q.userUS = map[string]uint64{}
	q.listed = map[string]bool{}
	q.dirty = map[string]uint64{}
}

// Append sequences and durably commits the appends, in order, and returns
// once all are committed (or failed); see im.Log. Appends of concurrent
// callers are grouped into shared commits.
func (s *Store) Append(as ...*im.Append) error {
	if err := s.writable(); err != nil {
		return err
	}
	q := s.seq
	reqs := make([]request, len(as))
	for i, a := range as {
		r := &reqs[i]
		r.a, r.done = a, make(chan struct{})
		select {
		case q.in <- r:
		case <-q.stop:
			for _, r := range reqs[:i] {
				<-r.done
			}
			return ErrClosed
		}
	}
	var errs []error
	for i := range reqs {
		<-reqs[i].done
		errs = append(errs, reqs[i].err)
	}
	return errors.Join(errs...)
}

func (q *sequencer) close() {
	close(q.stop)
	<-q.done
}

func (q *sequencer) run() {
	defer close(q.done)
	batch := make([]*request, 0, maxBatch)
	for {
		select {
		case r := <-q.in:
			batch = append(batch[:0], r)
		drain:
			for len(batch) < maxBatch {
				select {
				case r := <-q.in:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			q.commit(batch)
		case <-q.stop:
			return
		}
	}
}

type entry struct {
	k, v []byte
	ttl  time.Duration
	del  bool
	size int64
}

func (e entry) apply(txn *badger.Txn) error {
	if e.del {
		return txn.Delete(e.k)
	}
	be := badger.NewEntry(e.k, e.v)
	if e.ttl > 0 {
		be = be.WithTTL(e.ttl)
	}
	return txn.SetEntry(be)
}

// commit writes a batch in as few transactions as the limits allow; each
// append lies wholly inside one transaction together with the counters it
// advanced, so a crash never leaves a position reusable.
func (q *sequencer) commit(batch []*request) {
	// Between commits every in-memory counter equals its stored value
	// (nothing is dirty), so dropping them loses nothing.
	for _, m := range []map[string]uint64{q.convSeq, q.auxSeq, q.userUS} {
		if len(m) > maxCounters {
			clear(m)
		}
	}
	if len(q.listed) > maxCounters {
		clear(q.listed)
	}
	db := q.s.db
	maxCount, maxSize := db.MaxBatchCount()*8/10, db.MaxBatchSize()*8/10
	txn := db.NewTransaction(true)
	var count, size int64
	var pending []*request
	seen := map[string]*im.Append{}
	finish := func(err error) {
		if err != nil {
			q.reset() // counters may be ahead of the store: reload
		}
		appended := 0
		if err == nil && q.s.opts.Forget != nil {
			// Before the appends are published or return: nothing derived
			// (a search index) serves a purged body after its del is seen.
			var forgotten []im.Forgotten
			for _, r := range pending {
				if r.a.Purge != nil {
					forgotten = append(forgotten, r.a.Purge.Forgotten...)
				}
			}
			if len(forgotten) > 0 {
				q.s.opts.Forget.Forget(forgotten)
			}
		}
		for _, r := range pending {
			r.err = err
			if err == nil && r.a.Dup == nil {
				appended++
			}
			if err != nil {
				r.a.US = nil
			} else {
				// Heads first, so no delivery of the event precedes them.
				for i, uid := range r.a.To {
					q.s.heads.advance(uid, r.a.US[i])
				}
				if q.commits != nil {
					// Never blocks: the appender reserved a slot.
					q.commits.Publish(r.a)
				}
			}
			close(r.done)
		}
		if err == nil && appended > 0 && q.s.onCommit != nil {
			q.s.onCommit(appended)
		}
		pending = pending[:0]
	}
	flush := func() {
		if len(pending) == 0 {
			txn.Discard()
			txn = db.NewTransaction(true)
			return
		}
		// The cheap check on the write path: the reserve may have been
		// crossed since Append checked.
		err := q.s.writable()
		for k, n := range q.dirty {
			if err != nil {
				break
			}
			if err = txn.Set([]byte(k), u64(n)); err != nil {
				break
			}
		}
		if err == nil {
			err = txn.Commit()
			q.s.opts.Disk.Trip(err)
		} else {
			txn.Discard()
		}
		clear(q.dirty)
		finish(err)
		txn = db.NewTransaction(true)
		count, size = 0, 0
		clear(seen)
	}
	for _, r := range batch {
		a := r.a
		entries, ctrs, err := q.prepare(txn, a, seen)
		// Counters are charged in full even when another append of the
		// transaction already dirtied them: a safe overestimate.
		var n, z int64 = int64(len(entries) + len(ctrs)), 0
		for _, e := range entries {
			z += e.size
		}
		for _, c := range ctrs {
			z += int64(len(c.k) + 8 + 32)
		}
		if err == nil && (n > maxCount || z > maxSize) {
			err = ErrTooBig
		}
		if err != nil {
			// prepare may have advanced in-memory counters for a: commit
			// what is pending, then reload the counters from the store.
			flush()
			q.reset()
			a.US = nil
			r.err = err
			close(r.done)
			continue
		}
		if entries == nil { // dedupe hit
			close(r.done)
			continue
		}
		if count+n > maxCount || size+z > maxSize {
			flush()
		}
		for _, e := range entries {
			if err := e.apply(txn); err != nil {
				// Cannot happen within the limits checked above; fail
				// the whole transaction rather than commit half an append.
				pending = append(pending, r)
				txn.Discard()
				finish(fmt.Errorf("store: append: %w", err))
				txn = db.NewTransaction(true)
				count, size = 0, 0
				clear(seen)
				r = nil
				break
			}
		}
		if r == nil {
			continue
		}
		for _, c := range ctrs {
			q.dirty[string(c.k)] = c.n
		}
		count += n
		size += z
		pending = append(pending, r)
	}
	flush()
	txn.Discard()
}

func (q *sequencer) counter(txn *badger.Txn, m map[string]uint64, tab byte, name string) (uint64, error) {
	if n, ok := m[name]; ok {
		return n, nil
	}
	// Counters are written only when a transaction commits, so the batch
	// transaction reads the committed value.
	n, err := getU64(txn, key(tab, name))
	if err == nil {
		m[name] = n
	}
	return n, err
}

// counter is a counter's new value.
type counter struct {
	k []byte
	n uint64
}

// prepare allocates positions for a and returns its writes and the
// counters it advanced; nil entries and no error mean a dedupe hit (a.Dup
// is set).
func (q *sequencer) prepare(txn *badger.Txn, a *im.Append, seen map[string]*im.Append) (out []entry, ctrs []counter, err error) {
	var dk []byte
	if a.CMID != "" {
		dk = key(tabDedupe, a.UID, a.DID, a.CMID)
		if prev, ok := seen[string(dk)]; ok {
			ev := prev.Event
			ev.US = prev.SenderUS()
			a.Dup = &ev
			return nil, nil, nil
		}
		// Read through the batch's own transaction: a separate read
		// transaction per append would take Badger's oracle lock and wait
		// on the commit watermark inside the single writer's loop.
		ev, err := q.s.dedupeLookup(txn, a.UID, a.DID, a.CMID)
		switch {
		case err == nil:
			a.Dup = &ev
			return nil, nil, nil
		case errors.Is(err, ErrGone):
			return nil, nil, nil // done long ago: nothing to append or resend
		case !errors.Is(err, ErrNotFound):
			return nil, nil, err
		}
	}
	now := q.now()
	ms := uint64(now.UnixMilli())
	if ms < q.lastMS { // the clock went back: keep ts and ids monotonic
		ms = q.lastMS
	}
	q.lastMS = ms
	add := func(k, v []byte, ttl time.Duration) {
		out = append(out, entry{k: k, v: v, ttl: ttl, size: int64(len(k) + len(v) + 32)})
	}
	ev := &a.Event
	ev.CV = a.CV
	ev.TS = int64(ms)
	var p []byte
	var seq uint64
	if a.Aux {
		n, err := q.counter(txn, q.auxSeq, tabAuxSeq, a.CV)
		if err != nil {
			return nil, nil, err
		}
		n++
		q.auxSeq[a.CV] = n
		ctrs = append(ctrs, counter{key(tabAuxSeq, a.CV), n})
		p = ptr(ptrAux, a.CV, n)
		v, err := codec.MarshalStored(ev)
		if err != nil {
			return nil, nil, err
		}
		add(seqKey(tabAux, a.CV, n), v, a.TTL)
	} else {
		n, err := q.counter(txn, q.convSeq, tabConvSeq, a.CV)
		if err != nil {
			return nil, nil, err
		}
		seq = n + 1
		id, err := ulid.New(ms, q.entropy)
		if err != nil {
			return nil, nil, err
		}
		ev.ID, ev.Seq = id, seq
		q.convSeq[a.CV] = seq
		ctrs = append(ctrs, counter{key(tabConvSeq, a.CV), seq})
		p = ptr(ptrEvent, a.CV, seq)
		v, err := codec.MarshalStored(ev)
		if err != nil {
			return nil, nil, err
		}
		add(seqKey(tabEvent, a.CV, seq), v, a.TTL)
		add(append([]byte{tabEventID}, id[:]...), p, a.TTL)
		if ev.T == im.TEdit && ev.Tgt != nil {
			add(editKey(*ev.Tgt, id), p, a.TTL)
		}
	}
	a.US = make([]uint64, len(a.To))
	for i, uid := range a.To {
		n, err := q.counter(txn, q.userUS, tabUserUS, uid)
		if err != nil {
			return nil, nil, err
		}
		n++
		q.userUS[uid] = n
		a.US[i] = n
		add(seqKey(tabStream, uid, n), p, a.TTL)
		ctrs = append(ctrs, counter{key(tabUserUS, uid), n})
	}
	if dk != nil {
		ttl := DedupeTTL
		if a.TTL > 0 && a.TTL < ttl {
			ttl = a.TTL
		}
		add(dk, dedupeValue(a.SenderUS(), p), ttl)
		seen[string(dk)] = a
	}
	for _, m := range a.Members {
		r := m.Rec
		if m.SetFrom {
			r.From = seq
		}
		if m.SetTo {
			r.To = seq
		}
		v, err := json.Marshal(r)
		if err != nil {
			return nil, nil, err
		}
		add(key(tabMember, m.GID, m.UID), v, 0)
	}
	if a.Group != nil {
		v, err := json.Marshal(a.Group)
		if err != nil {
			return nil, nil, err
		}
		add(key(tabGroup, a.Group.GID), v, 0)
	}
	for _, m := range a.Markers {
		// Markers only move forward (im.Marker): keep the larger.
		k := key(tabMarker, m.CV, m.UID, m.K)
		cur, err := getU64(txn, k)
		if err != nil {
			return nil, nil, err
		}
		if m.Upto > cur {
			add(k, u64(m.Upto), 0)
		}
	}
	for _, r := range a.Reacts {
		k := reactKey(r.ID, r.UID, r.K)
		if r.On {
			add(k, nil, a.TTL)
		} else {
			out = append(out, entry{k: k, del: true, size: int64(len(k) + 32)})
		}
	}
	if a.Purge != nil {
		es, err := q.purge(txn, a.Purge, now)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, es...)
	}
	for _, c := range a.UserConvs {
		k := key(tabUserConv, c.UID, c.CV)
		switch {
		case c.Remove:
			delete(q.listed, string(k))
			out = append(out, entry{k: k, del: true, size: int64(len(k) + 32)})
		case !q.listed[string(k)]:
			q.listed[string(k)] = true
			add(k, nil, 0)
		}
	}
	return out, ctrs, nil
}

package jetstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// maxAttempts bounds the compare-and-set retries of one append.
const maxAttempts = 200

// head is a cached counter record: its stream sequence (what the next
// compare-and-set expects) and value; conversation heads also keep the
// last id, so ids increase with seq across nodes whose clocks differ.
type head struct {
	seq uint64
	n   uint64
	id  ulid.ULID
}

// headCache remembers heads this node wrote or read. A stale entry costs
// one failed compare-and-set and a re-read, never a wrong position.
type headCache struct {
	mu sync.Mutex
	m  map[string]head
	// waiting: appends that lost a compare-and-set on a head and wait
	// to hear that another node moved it (update, sharedheads.go).
	waiting map[string][]*waiter
}

// waiter is an append waiting for any of several heads to move.
type waiter struct {
	ch   chan struct{}
	once sync.Once
}

func (w *waiter) wake() { w.once.Do(func() { close(w.ch) }) }

func (c *headCache) get(k string) (head, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[k]
	return h, ok
}

func (c *headCache) put(k string, h head) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 100_000 {
		clear(c.m)
	}
	c.m[k] = h
}

// missing lists the subjects of ks that are not cached (a subject listed
// twice may come twice: reading it twice is harmless).
func (c *headCache) missing(ks []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, k := range ks {
		if _, ok := c.m[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// update takes h for k if k is cached with an older stream sequence
// (another node's commit moved a head this node uses) and wakes the
// appends waiting for k.
func (c *headCache) update(k string, h head) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.m[k]; ok && cur.seq < h.seq {
		c.m[k] = h
		for _, w := range c.waiting[k] {
			w.wake()
		}
		delete(c.waiting, k)
	}
}

// usedHead is a head an attempt read: its subject and the stream
// sequence its compare-and-set expected.
type usedHead struct {
	subj string
	seq  uint64
}

// moved returns a channel closed once one of the heads in used has
// moved past what the attempt expected (at once if one has already);
// done unregisters it.
func (c *headCache) moved(used []usedHead) (wake <-chan struct{}, done func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &waiter{ch: make(chan struct{})}
	for _, u := range used {
		if cur, ok := c.m[u.subj]; ok && cur.seq != u.seq {
			w.wake()
			return w.ch, func() {}
		}
	}
	if c.waiting == nil {
		c.waiting = map[string][]*waiter{}
	}
	for _, u := range used {
		c.waiting[u.subj] = append(c.waiting[u.subj], w)
	}
	return w.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, u := range used {
			ws := slices.DeleteFunc(c.waiting[u.subj], func(x *waiter) bool { return x == w })
			if len(ws) == 0 {
				delete(c.waiting, u.subj)
			} else {
				c.waiting[u.subj] = ws
			}
		}
	}
}

// dropStale forgets the heads a failed attempt used unless they moved
// meanwhile (update): those are read again.
func (c *headCache) dropStale(used []usedHead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range used {
		if cur, ok := c.m[u.subj]; ok && cur.seq == u.seq {
			delete(c.m, u.subj)
		}
	}
}

// readHead returns a counter record, from the cache or the leader (and
// then caches it).
func (s *Store) readHead(subject string) (head, error) {
	if h, ok := s.heads.get(subject); ok {
		return h, nil
	}
	h, err := headOf(s.get(subject))
	if err != nil {
		return head{}, err
	}
	s.heads.put(subject, h)
	return h, nil
}

// headOf is the head a read of its record found: a missing record is
// the head before the first append, expecting the tombstone's sequence
// (0 when there is none).
func headOf(r rec, err error) (head, error) {
	if errors.Is(err, ErrNotFound) {
		return head{seq: r.seq}, nil
	}
	if err != nil {
		return head{}, err
	}
	h, err := parseHead(r.data)
	if err != nil {
		return head{}, fmt.Errorf("jetstore: head %s: %w", r.subj, err)
	}
	h.seq = r.seq
	return h, nil
}

// prefetch reads the heads a will use that are not cached, at once, into
// the cache: try reads them before it takes the order lock, so a cache
// miss (a head's first use, or a re-read after a lost compare-and-set)
// does not stall this node's other appends for its round trips. This
// append's stripes keep this node's other appends off these heads
// meanwhile; another node moving one makes the compare-and-set fail, as
// with any stale head.
func (s *Store) prefetch(a *im.Append) error {
	subjects := make([]string, 0, 1+len(a.To))
	if a.Aux {
		subjects = append(subjects, auxHeadSubj(a.CV))
	} else {
		subjects = append(subjects, convHeadSubj(a.CV))
	}
	for _, uid := range a.To {
		subjects = append(subjects, userHeadSubj(uid))
	}
	missing := s.heads.missing(subjects)
	if len(missing) == 0 {
		return nil
	}
	// A large group's first message after a start reads thousands of
	// user heads: at most prefetchReads at a time.
	errs := make([]error, len(missing))
	sem := make(chan struct{}, prefetchReads)
	var wg sync.WaitGroup
	for i, sub := range missing {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, errs[i] = s.readHead(sub)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prefetchReads bounds the head reads one prefetch has in flight.
const prefetchReads = 16

// record is the head's stored value, what parseHead reads: "n", or
// "n id" for a conversation head.
func (h *head) record() []byte {
	p := strconv.AppendUint(nil, h.n, 10)
	if h.id != (ulid.ULID{}) {
		p = append(p, ' ')
		p = append(p, h.id.String()...)
	}
	return p
}

// parseHead reads a head record: "n" or "n id".
func parseHead(p []byte) (head, error) {
	var h head
	f := strings.Fields(string(p))
	if len(f) == 0 || len(f) > 2 {
		return h, fmt.Errorf("bad head record %q", p)
	}
	var err error
	if h.n, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return h, err
	}
	if len(f) > 1 {
		if h.id, err = ulid.ParseStrict(f[1]); err != nil {
			return h, err
		}
	}
	return h, nil
}

// msg is one message of a batch; expect, when set, is the stream
// sequence the subject's current record must have (0: none).
type msg struct {
	subj   string
	data   []byte
	hdr    nats.Header
	expect *uint64
	// head, when set, is the cache entry this message becomes.
	head *head
}

func exp(n uint64) *uint64 { return &n }

// Append sequences and commits each append as one atomic batch; see
// im.Log and the package doc.
func (s *Store) Append(as ...*im.Append) error {
	var errs []error
	for _, a := range as {
		if err := s.append1(a); err != nil {
			a.US = nil
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stripesOf are the node-local locks an append takes, in order: one per
// conversation, recipient and dedupe key, so this node's own writers
// never race each other's compare-and-set.
func (s *Store) stripesOf(a *im.Append) []int {
	idx := func(k string) int {
		h := fnv.New32a()
		h.Write([]byte(k))
		return int(h.Sum32() % uint32(len(s.stripes)))
	}
	out := []int{idx("c" + a.CV)}
	for _, uid := range a.To {
		out = append(out, idx("u"+uid))
	}
	if a.CMID != "" {
		out = append(out, idx("u"+a.UID))
	}
	for _, m := range a.Markers {
		out = append(out, idx("c"+m.CV))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// appendBound is nil except in a build with the bound tag (bound.go),
// which measures the cluster's throughput bound (docs/bench.md).
var appendBound func(s *Store, a *im.Append) error

func (s *Store) append1(a *im.Append) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if appendBound != nil && !a.Aux {
		return appendBound(s, a)
	}
	locks := s.stripesOf(a)
	for _, i := range locks {
		s.stripes[i].Lock()
	}
	defer func() {
		for _, i := range locks {
			s.stripes[i].Unlock()
		}
	}()
	start := time.Now()
	var unsure []unsureTry // attempts that may have committed
	for attempt := 0; ; attempt++ {
		done, touched, err := s.try(a, attempt > 0, &unsure)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		// Lost a compare-and-set to another node, or the batch met a
		// leader election: re-read and retry, at least maxAttempts times
		// and for at least the failover time.
		if attempt >= maxAttempts && time.Since(start) > s.opts.Failover {
			return ErrContention
		}
		// Another node's commit usually moved the heads: retry as soon as
		// it says so (sharedheads.go), with the heads it sent, before
		// that node's next append to them goes out; otherwise after the
		// backoff, reading them again.
		wake, unwait := s.heads.moved(touched)
		ok := s.backoffOr(attempt, wake)
		unwait()
		if !ok {
			return ErrClosed
		}
		s.heads.dropStale(touched)
	}
}

// backoff waits before retry attempt+1 of a lost compare-and-set: 1 ms
// doubling to 50 ms, jittered; false once the store is closed.
func (s *Store) backoff(attempt int) bool { return s.backoffOr(attempt, nil) }

// backoffOr is backoff that ends early when wake is closed.
func (s *Store) backoffOr(attempt int, wake <-chan struct{}) bool {
	pause := time.Duration(min(1<<min(attempt, 6), 50)) * time.Millisecond
	t := time.NewTimer(pause/2 + rand.N(pause))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-s.stop:
		return false
	}
}

// try makes one attempt: done is true when a was committed or found to
// be a repeat; false with no error means a compare-and-set failed and
// touched lists the heads to re-read. The first attempt does not look
// the dedupe record up: it expects none (a repeat then fails the
// compare-and-set), which saves a round trip to the leader per send;
// retries (lookup) check it first.
func (s *Store) try(a *im.Append, lookup bool, unsure *[]unsureTry) (done bool, touched []usedHead, err error) {
	a.Dup, a.US = nil, nil
	if len(*unsure) > 0 {
		if done, err := s.settle(a, *unsure); done || err != nil {
			return done, nil, err
		}
	}
	// What needs the leader comes first, outside the order lock: the
	// dedupe lookup, a delete's target, heads not cached.
	ddSeq := uint64(0)
	if a.CMID != "" && lookup {
		ev, seq, err := s.deduped(a.UID, a.DID, a.CMID)
		switch {
		case err == nil:
			a.Dup = &ev
			return true, nil, nil
		case errors.Is(err, im.ErrGone):
			return true, nil, nil
		case !errors.Is(err, ErrNotFound):
			return false, nil, err
		}
		ddSeq = seq
	}
	var purged []msg
	if a.Purge != nil {
		if purged, err = s.purge(a.Purge); err != nil {
			return false, nil, err
		}
	}
	if err := s.prefetch(a); err != nil {
		return false, nil, err
	}
	// Ids in commit order: from the id's making until the commit is sent
	// (not answered), this node's conversation appends go one at a time,
	// and JetStream commits what one connection sends in order. The head
	// reads in between are cache hits (prefetch).
	unlock := func() {}
	if !a.Aux {
		s.order.Lock()
		var once sync.Once
		unlock = func() { once.Do(s.order.Unlock) }
		defer unlock()
	}
	var b []msg
	ttl := ""
	if a.TTL > 0 {
		ttl = strconv.FormatInt(int64(max(time.Second, a.TTL.Round(time.Second))/time.Second), 10)
	}
	now := s.now()
	ms := uint64(max(now.UnixMilli(), 0))
	ev := &a.Event
	ev.CV = a.CV
	var p string // the event's subject: what pointers hold
	var seq uint64
	if a.Aux {
		hs := auxHeadSubj(a.CV)
		h, err := s.readHead(hs)
		if err != nil {
			return false, nil, err
		}
		touched = append(touched, usedHead{hs, h.seq})
		n := h.n + 1
		ev.TS = int64(ms)
		p = auxSubj(a.CV, n)
		v, err := codec.MarshalStored(ev)
		if err != nil {
			return false, nil, err
		}
		nh := head{n: n}
		b = append(b, msg{subj: hs, data: nh.record(), expect: exp(h.seq), head: &nh},
			msg{subj: p, data: v, hdr: tsHeader(ev.TS, ttl)})
	} else {
		hs := convHeadSubj(a.CV)
		h, err := s.readHead(hs)
		if err != nil {
			return false, nil, err
		}
		touched = append(touched, usedHead{hs, h.seq})
		seq = h.n + 1
		// The id is above this node's last one and the conversation's
		// last one (another node's clock may be ahead), so ids increase
		// with seq and, on this node, with commit order. Above a floor
		// another node also builds on, it steps by a random amount, as
		// ULID's own monotonic entropy does: two nodes that both step
		// from one floor (into different conversations) rarely collide,
		// and the id index's compare-and-set refuses a collision.
		floor := s.lastID
		if h.n > 0 && h.id.Compare(floor) > 0 {
			floor = h.id
		}
		ms = max(ms, floor.Time())
		s.entropy.Lock()
		id, err := ulid.New(ms, s.entropy.r)
		s.entropy.Unlock()
		if err != nil {
			return false, nil, err
		}
		if id.Compare(floor) <= 0 {
			id = floor
			if err := id.SetEntropy(addEntropy(floor.Entropy(), 1+rand.Uint32N(1<<31))); err != nil {
				return false, nil, err
			}
		}
		s.lastID = id
		ev.ID, ev.Seq, ev.TS = id, seq, int64(ms)
		p = eventSubj(a.CV, seq)
		v, err := codec.MarshalStored(ev)
		if err != nil {
			return false, nil, err
		}
		nh := head{n: seq, id: id}
		b = append(b,
			msg{subj: hs, data: nh.record(), expect: exp(h.seq), head: &nh},
			msg{subj: p, data: v, hdr: tsHeader(ev.TS, ttl)},
			// An id is unique cluster-wide: its index entry must be new.
			msg{subj: idSubj(id), data: []byte(p), hdr: tsHeader(ev.TS, ttl), expect: exp(0)})
	}
	if !a.Aux && ev.T == im.TEdit && ev.Tgt != nil {
		// The edit index: a purge of the target finds its edits.
		b = append(b, msg{subj: editSubj(*ev.Tgt, ev.ID), data: []byte(p), hdr: tsHeader(ev.TS, ttl)})
	}
	b = append(b, purged...)
	a.US = make([]uint64, len(a.To))
	next := map[string]head{}
	var order []string
	for i, uid := range a.To {
		h, ok := next[uid]
		if !ok {
			hs := userHeadSubj(uid)
			if h, err = s.readHead(hs); err != nil {
				return false, nil, err
			}
			touched = append(touched, usedHead{hs, h.seq})
			order = append(order, uid)
		}
		h.n++
		next[uid] = h
		a.US[i] = h.n
		b = append(b, msg{subj: pointerSubj(uid, h.n), data: []byte(p), hdr: tsHeader(ev.TS, ttl)})
	}
	for _, uid := range order {
		h := next[uid]
		nh := head{n: h.n}
		b = append(b, msg{subj: userHeadSubj(uid), data: nh.record(), expect: exp(h.seq), head: &nh})
	}
	if a.CMID != "" {
		dttl := DedupeTTL
		if a.TTL > 0 && a.TTL < dttl {
			dttl = a.TTL
		}
		b = append(b, msg{subj: dedupeSubj(a.UID, a.DID, a.CMID),
			data:   fmt.Appendf(nil, "%d %s", a.SenderUS(), p),
			hdr:    nats.Header{hdrTTL: []string{strconv.FormatInt(int64(max(time.Second, dttl)/time.Second), 10)}},
			expect: exp(ddSeq)})
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
			return false, nil, err
		}
		b = append(b, msg{subj: memberSubj(m.GID, m.UID), data: v})
	}
	if a.Group != nil {
		v, err := json.Marshal(a.Group)
		if err != nil {
			return false, nil, err
		}
		b = append(b, msg{subj: groupSubj(a.Group.GID), data: v})
	}
	marked := map[string]bool{}
	for _, m := range a.Markers {
		// Markers only move forward: keep the larger, by compare-and-set.
		ms := markerSubj(m.CV, m.UID, m.K)
		if marked[ms] {
			continue
		}
		cur, cseq, err := s.getU64(ms)
		if err != nil {
			return false, nil, err
		}
		if m.Upto > cur {
			marked[ms] = true
			b = append(b, msg{subj: ms, data: []byte(strconv.FormatUint(m.Upto, 10)), expect: exp(cseq)})
		}
	}
	for _, r := range a.Reacts {
		m := msg{subj: reactSubj(r.ID, r.UID, r.K), data: []byte("1"), hdr: tsHeader(ev.TS, ttl)}
		if !r.On {
			m = msg{subj: m.subj, hdr: nats.Header{hdrDel: []string{"1"}}}
		}
		b = append(b, m)
	}
	for _, c := range a.UserConvs {
		m := msg{subj: userConvSubj(c.UID, c.CV), data: []byte("1")}
		if c.Remove {
			m = msg{subj: m.subj, hdr: nats.Header{hdrDel: []string{"1"}}}
		}
		b = append(b, m)
	}
	for _, u := range *unsure {
		// Fence an earlier attempt that may yet commit: its id index
		// entry must be new, so once this tombstone is stored it cannot
		// commit, and if it did, this batch cannot (settle then adopts it).
		if u.id != (ulid.ULID{}) {
			b = append(b, msg{subj: idSubj(u.id), hdr: nats.Header{hdrDel: []string{"1"}}, expect: exp(0)})
		}
	}
	id := nuid.Next()
	b[0].hdr = nats.Header{hdrBatch: []string{id}} // b[0] is a head: no other header
	last, err := s.publish(id, b, unlock)
	if errors.Is(err, errLost) {
		// The batch may have committed, or may yet (an election): the
		// next attempt finds out first (settle).
		u := unsureTry{batch: id, head: b[0].subj, seq: seq, ts: ev.TS, us: slices.Clone(a.US)}
		if !a.Aux {
			u.id = ev.ID
		}
		*unsure = append(*unsure, u)
		s.unsure.Add(1)
		s.lg.Info("jetstore: an append's answer did not tell whether it committed; settling it before the retry",
			"cv", a.CV, "err", err)
		return false, touched, nil
	}
	if errors.Is(err, errConflict) {
		return false, touched, nil
	}
	if err != nil {
		return false, nil, err
	}
	// The leader answered: reads go to it again (route), so this node
	// reads what it just wrote even while its replica catches up.
	s.logRoute.up()
	// The batch is stored contiguously, ending at last: cache the heads
	// it wrote with their new stream sequences.
	first := last - uint64(len(b)) + 1
	var moved []byte
	for i, m := range b {
		if m.head != nil {
			h := *m.head
			h.seq = first + uint64(i)
			s.heads.put(m.subj, h)
			moved = appendHead(moved, m.subj, h.seq, m.data)
		}
	}
	s.shareHeads(moved)
	s.committed(a)
	return true, nil, nil
}

// unsureTry is an attempt of an append whose answer did not say whether
// it committed: its batch and what it would have given the append.
type unsureTry struct {
	batch string    // its batch id, on its first message (a head)
	head  string    // that head's subject
	id    ulid.ULID // its event's id, whose index entry is its own (zero for aux events)
	seq   uint64
	ts    int64
	us    []uint64
}

// settle finds out whether an earlier attempt of a whose outcome was
// unknown committed after all; if so a takes that attempt's results and
// is handed on as committed. A batch whose answer was lost, or that met
// an election, may be applied after the answer failed, even after a
// leader read of its head missed it: a retry that then built on the head
// it wrote would store the event twice. So settle reads from the leader
// the head the attempts wrote first (its batch id names the append that
// wrote it last) and each attempt's id index entry (another node may
// have moved the head since), and caches the head it read. The next
// batch fences the earlier attempts (try): it stores a tombstone on each
// one's id index entry, expecting none, so at most one of them commits
// however late an earlier one is applied.
func (s *Store) settle(a *im.Append, us []unsureTry) (bool, error) {
	r, err := s.getLeader(us[0].head)
	h, err := headOf(r, err)
	if err != nil {
		return false, err
	}
	for i := range us {
		if r.batch != "" && r.batch == us[i].batch {
			s.adopt(a, &us[i])
			return true, nil
		}
	}
	for i := range us {
		if us[i].id == (ulid.ULID{}) {
			continue
		}
		_, err := s.getLeader(idSubj(us[i].id))
		if err == nil {
			s.adopt(a, &us[i])
			return true, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return false, err
		}
	}
	s.heads.put(us[0].head, h)
	return false, nil
}

// adopt gives a the results of its attempt u, which committed.
func (s *Store) adopt(a *im.Append, u *unsureTry) {
	ev := &a.Event
	ev.CV, ev.ID, ev.Seq, ev.TS = a.CV, u.id, u.seq, u.ts
	a.US = slices.Clone(u.us)
	s.adopted.Add(1)
	s.lg.Info("jetstore: an append whose answer was lost had committed", "cv", a.CV, "seq", u.seq)
	s.logRoute.up()
	s.committed(a)
}

// committed hands a committed append on: to the other nodes (Relay) and
// to this node's delivery (Commits).
func (s *Store) committed(a *im.Append) {
	// Relay first: once on the commit stream, a is delivery's to read.
	if s.opts.Relay != nil {
		s.opts.Relay(a)
	}
	if s.opts.Commits != nil {
		s.opts.Commits.Publish(a) // never blocks: the appender reserved a slot
	}
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(1)
	}
}

func tsHeader(ts int64, ttl string) nats.Header {
	h := nats.Header{hdrTS: []string{strconv.FormatInt(ts, 10)}}
	if ttl != "" {
		h[hdrTTL] = []string{ttl}
	}
	return h
}

// purge rewrites the target of p and its edits as Deleted and, unless
// p.Keep, without their bodies (messages of the append's batch), and
// records them in p.Forgotten. A rewrite keeps the event's TTL header
// (its lifetime starts again: a disappearing message may live up to
// twice its ttl once deleted).
func (s *Store) purge(p *im.Purge) ([]msg, error) {
	p.Forgotten = p.Forgotten[:0]
	var subjects []string
	r, err := s.get(idSubj(p.ID))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	subjects = append(subjects, string(r.data))
	t := p.ID.String()
	if err := s.scan(subj("ed", part(t), t, "*"), func(r rec) error {
		subjects = append(subjects, string(r.data))
		return nil
	}); err != nil {
		return nil, err
	}
	var out []msg
	for _, sub := range subjects {
		m, err := s.getMsg(sub)
		if errors.Is(err, ErrNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, err
		}
		var ev im.Event
		if err := codec.UnmarshalStored(m.Data, &ev); err != nil {
			continue // unreadable
		}
		p.Forgotten = append(p.Forgotten, im.Forgotten{CV: ev.CV, ID: ev.ID, Att: ev.Att, Deleted: true, Held: p.Keep})
		ev.Deleted = true
		if !p.Keep {
			ev.Tombstone()
		}
		v, err := codec.MarshalStored(&ev)
		if err != nil {
			return nil, err
		}
		hdr := nats.Header{}
		for _, k := range []string{hdrTS, hdrTTL} {
			if x := m.Header.Get(k); x != "" {
				hdr[k] = []string{x}
			}
		}
		out = append(out, msg{subj: sub, data: v, hdr: hdr})
	}
	return out, nil
}

// addEntropy adds n to a ULID's 80-bit entropy (big-endian); on
// overflow it adds one.
func addEntropy(e []byte, n uint32) []byte {
	out := slices.Clone(e)
	carry := uint64(n)
	for i := len(out) - 1; i >= 0 && carry > 0; i-- {
		v := uint64(out[i]) + carry
		out[i] = byte(v)
		carry = v >> 8
	}
	if carry > 0 && n > 1 {
		return addEntropy(e, 1)
	}
	return out
}

// replies receives the answers to commits on one wildcard subscription,
// so a commit can be sent (in order, under the node's id lock) and its
// answer awaited after the lock is released.
type replies struct {
	prefix string
	mu     sync.Mutex
	wait   map[string]chan *nats.Msg
	sub    *nats.Subscription
}

func (r *replies) start(nc *nats.Conn) error {
	r.prefix = nats.NewInbox() + "."
	r.wait = map[string]chan *nats.Msg{}
	sub, err := nc.Subscribe(r.prefix+"*", func(m *nats.Msg) {
		r.mu.Lock()
		ch := r.wait[m.Subject[len(r.prefix):]]
		delete(r.wait, m.Subject[len(r.prefix):])
		r.mu.Unlock()
		if ch != nil {
			ch <- m // buffered
		}
	})
	if err != nil {
		return err
	}
	r.sub = sub
	return nc.Flush()
}

// request sends m, calls sent, and waits up to timeout for the answer:
// nats.ErrNoResponders when JetStream had no leader to take it,
// nats.ErrTimeout when none came.
func (r *replies) request(nc *nats.Conn, m *nats.Msg, sent func(), timeout time.Duration) (*nats.Msg, error) {
	token := nuid.Next()
	ch := make(chan *nats.Msg, 1)
	r.mu.Lock()
	r.wait[token] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.wait, token)
		r.mu.Unlock()
	}()
	m.Reply = r.prefix + token
	err := nc.PublishMsg(m)
	sent()
	if err != nil {
		return nil, err
	}
	select {
	case reply := <-ch:
		if len(reply.Data) == 0 && reply.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return reply, nil
	case <-time.After(timeout):
		return nil, nats.ErrTimeout
	}
}

var (
	errConflict = errors.New("jetstore: compare-and-set conflict")
	errLost     = errors.New("jetstore: commit answer lost")
	// errMaybe is an answer that does not tell whether the batch was
	// stored: handled as a lost answer.
	errMaybe = fmt.Errorf("jetstore: commit outcome unknown: %w", errLost)
)

// pubAck is JetStream's answer to a batch commit.
type pubAck struct {
	Seq   uint64 `json:"seq"`
	Error *struct {
		Code    int    `json:"code"`
		ErrCode int    `json:"err_code"`
		Desc    string `json:"description"`
	} `json:"error"`
}

// publish sends b as one atomic batch and returns the stream sequence
// of its last message. errConflict: a compare-and-set failed, the batch
// was dropped on the way or no leader took it; nothing was stored.
// errLost (or errMaybe): no answer came, or one that does not tell; the
// batch may or may not be stored.
// unlock is called once the commit is sent, before its answer comes.
func (s *Store) publish(id string, b []msg, unlock func()) (uint64, error) {
	defer unlock()
	for i, m := range b {
		nm := nats.NewMsg(m.subj)
		nm.Data = m.data
		for k, v := range m.hdr {
			nm.Header[k] = v
		}
		nm.Header.Set(hdrBID, id)
		nm.Header.Set(hdrBSeq, strconv.Itoa(i+1))
		if m.expect != nil {
			nm.Header.Set(hdrExp, strconv.FormatUint(*m.expect, 10))
		}
		if i < len(b)-1 {
			if err := s.nc.PublishMsg(nm); err != nil {
				return 0, errConflict // the connection is down: retry
			}
			continue
		}
		nm.Header.Set(hdrBCom, "1")
		reply, err := s.replies.request(s.nc, nm, unlock, s.opts.Timeout)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return 0, errConflict // no stream leader: nothing stored
		case errors.Is(err, nats.ErrTimeout):
			return 0, errLost
		case err != nil:
			return 0, errMaybe // sent, then the connection failed
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
				return 0, errMaybe // perhaps proposed before the leader stepped down
			case 10199:
				return 0, im.ErrTooBig
			}
			return 0, fmt.Errorf("jetstore: commit: %s (%d)", e.Desc, e.ErrCode)
		}
		return ack.Seq, nil
	}
	return 0, errors.New("jetstore: empty batch")
}

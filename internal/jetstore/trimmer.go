package jetstore

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

// DefaultTrimEvery is how often a Trimmer runs when TrimmerOptions.Every
// is 0 (as Badger's trimmer).
const DefaultTrimEvery = time.Minute

// TrimmerOptions configure a node's retention trimmer.
type TrimmerOptions struct {
	// Node names this node in the lease.
	Node string
	// Retention is the server default (im.retention); 0 keeps
	// everything but what a conversation's own retention removes.
	Retention time.Duration
	// Every is how often the node tries to take the lease and trim
	// (DefaultTrimEvery when 0).
	Every time.Duration
	// Lease is how long the lease lasts unless its holder renews it
	// (before each pass and each chunk of deletes): after a holder dies,
	// another node takes over within Lease + Every. When 0, 3 × Every
	// and at least 30 s, so that a chunk of deletes on a loaded node ends
	// well before its lease could.
	Lease time.Duration
	// OnTrim, when set, is called after each pass this node ran.
	OnTrim func(TrimStats, error)
	// Forget, when set, is told which events left the store (the search
	// index, file references).
	Forget im.Forgetter
	// Attachments, when set, is called for each file a trimmed message
	// attached (fid, the message's id): file storage drops the reference.
	Attachments func(fid string, id ulid.ULID)
	Logger      *slog.Logger
}

// Trimmer runs Trim on a timer on exactly one node of the cluster at a
// time: the holder of the lease in tern-compliance (trim-lease: the node
// and the wall-clock time until which it holds it). A node takes the
// lease when nobody holds it or its time has passed, by compare-and-set
// on the key's revision, so two nodes never both win it; the holder
// renews it before each pass and each chunk of deletes and stops a pass
// when a renewal fails.
type Trimmer struct {
	s    *Store
	o    TrimmerOptions
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	rev  uint64 // the lease revision this node wrote last (0: not held)
	// cur is where this holder's walks go on; a new one with each lease.
	cur *trimCursor
}

// lease is the value of trim-lease.
type lease struct {
	Node  string `json:"node"`
	Until int64  `json:"until"` // Unix ms, wall clock
}

// StartTrimmer starts the store's trimmer; Stop ends it.
func (s *Store) StartTrimmer(o TrimmerOptions) *Trimmer {
	if o.Every <= 0 {
		o.Every = DefaultTrimEvery
	}
	if o.Lease <= 0 {
		o.Lease = max(3*o.Every, 30*time.Second)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Trimmer{s: s, o: o, stop: make(chan struct{})}
	t.wg.Add(1)
	go t.loop()
	return t
}

// Stop ends the timer, waits for a running pass and hands the lease
// back, so another node takes over at its next tick.
func (t *Trimmer) Stop() {
	select {
	case <-t.stop:
		return
	default:
	}
	close(t.stop)
	t.wg.Wait()
	t.release()
}

func (t *Trimmer) loop() {
	defer t.wg.Done()
	tick := time.NewTicker(t.o.Every)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		if !t.renew() {
			continue
		}
		var cutoff time.Time
		if t.o.Retention > 0 {
			cutoff = t.s.now().Add(-t.o.Retention)
		}
		st, err := t.s.trim(cutoff, trimRun{guard: t.renew, forget: t.o.Forget, att: t.o.Attachments, quit: t.stop, cur: t.cur})
		switch {
		case errors.Is(err, errLostLease):
			t.o.Logger.Info("retention: another node took the trimmer lease", "node", t.o.Node)
		case err != nil && !errors.Is(err, ErrClosed):
			t.o.Logger.Warn("retention: trim", "error", err)
		}
		if t.o.OnTrim != nil {
			t.o.OnTrim(st, err)
		}
	}
}

// Holding reports whether this node holds the lease, as far as it knows.
func (t *Trimmer) Holding() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rev != 0
}

// renew takes or extends the lease: true when this node holds it for
// another Lease.
func (t *Trimmer) renew() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.stop:
		t.rev = 0
		return false
	default:
	}
	kv := t.s.kv[bucketCompliance]
	v, err := json.Marshal(lease{Node: t.o.Node, Until: time.Now().Add(t.o.Lease).UnixMilli()})
	if err != nil {
		t.rev = 0
		return false
	}
	held := t.rev != 0
	err = t.s.do(func(ctx context.Context) error {
		e, err := kv.Get(ctx, keyLease)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			t.rev, err = kv.Create(ctx, keyLease, v)
			return err
		case err != nil:
			return err
		}
		var cur lease
		if json.Unmarshal(e.Value(), &cur) == nil && cur.Node != t.o.Node && time.Now().UnixMilli() < cur.Until {
			return errHeld
		}
		t.rev, err = kv.Update(ctx, keyLease, v, e.Revision())
		return err
	})
	if err != nil {
		if !errors.Is(err, errHeld) && !isWrongSeq(err) && !errors.Is(err, ErrClosed) {
			t.o.Logger.Warn("retention: trimmer lease", "error", err)
		}
		t.rev = 0
		return false
	}
	if !held {
		// Another node may have trimmed meanwhile, under other holds.
		t.cur = &trimCursor{}
	}
	return true
}

// errHeld: another node holds the lease.
var errHeld = errors.New("jetstore: trimmer lease held by another node")

// release deletes the lease if this node still holds it.
func (t *Trimmer) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rev == 0 {
		return
	}
	rev := t.rev
	t.rev = 0
	ctx, cancel := context.WithTimeout(context.Background(), t.s.opts.Timeout)
	defer cancel()
	err := t.s.kv[bucketCompliance].Delete(ctx, keyLease, jetstream.LastRevision(rev))
	if err != nil && !isWrongSeq(err) {
		t.o.Logger.Debug("retention: hand back the trimmer lease", "error", err)
	}
}

package jetstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

// Errors.
var (
	// ErrNotFound and ErrClosed are the domain's.
	ErrNotFound = im.ErrNotFound
	ErrClosed   = im.ErrClosed
	// ErrContention: an append lost its compare-and-set too many times.
	ErrContention = errors.New("jetstore: append kept conflicting")
	// ErrLeaderAway: a write that does not wait for a leader election
	// (the registry and presence writes of a connect) met one.
	ErrLeaderAway = errors.New("jetstore: stream leader away")
	// ErrTooManyHolds: the legal holds would outgrow their one KV record
	// (compliance.go); an im.ErrTooBig (413).
	ErrTooManyHolds = fmt.Errorf("jetstore: %w: too many legal holds in the cluster (remove lifted ones)", im.ErrTooBig)
)

// Stream and bucket names.
const (
	LogStream      = "TERN"
	bucketUsers    = "tern-users"
	bucketTokens   = "tern-tokens"
	bucketContacts = "tern-contacts"
	bucketPresence = "tern-presence"
	bucketMeta     = "tern-meta"
	bucketConns    = "tern-conns"
)

// buckets are the KV buckets Open creates when they are missing.
var buckets = []string{bucketUsers, bucketTokens, bucketContacts, bucketPresence, bucketMeta, bucketConns, bucketCompliance}

// Partitions is the number of hash partitions in subject names. It is
// part of the stored layout: changing it needs a migration.
const Partitions = 16

// DedupeTTL is how long a (uid, did, cmid) is remembered, as in Badger.
const DedupeTTL = 7 * 24 * time.Hour

// Headers.
const (
	hdrTS   = "Tern-Ts"  // event ms on events and pointers (retention)
	hdrDel  = "Tern-Del" // a tombstone: the record is cleared
	hdrTTL  = "Nats-TTL"
	hdrBID  = "Nats-Batch-Id"
	hdrBSeq = "Nats-Batch-Sequence"
	hdrBCom = "Nats-Batch-Commit"
	hdrExp  = "Nats-Expected-Last-Subject-Sequence"
	// hdrBatch names the append that wrote a head record, so a commit
	// whose answer was lost can be recognised.
	hdrBatch = "Tern-Batch"
)

// Options configure a Store.
type Options struct {
	// Replicas of every stream and bucket: 3 in a cluster, 1 alone.
	Replicas int
	// Now stamps events (tests inject a clock); time.Now when nil.
	Now func() time.Time
	// Commits gets every append this node commits, in per-user order.
	Commits *im.CommitStream
	// OnCommit, when set, is told how many appends each commit wrote.
	OnCommit func(n int)
	// Relay, when set, gets every append this node commits, after
	// Commits (the cluster's live delivery publishes it to other nodes).
	Relay func(a *im.Append)
	// Timeout bounds each request to JetStream (5 s when zero).
	Timeout time.Duration
	// Failover is how long requests are retried while JetStream elects a
	// new leader (20 s when zero).
	Failover time.Duration
	// LeaderWait is how long a stream's leader may leave a read
	// unanswered before reads of that stream go to any replica until it
	// answers again (route; 1 s when zero).
	LeaderWait time.Duration
	Logger     *slog.Logger
}

// Store implements im.Store and accounts.Store on JetStream.
type Store struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	log  jetstream.Stream
	kv   map[string]jetstream.KeyValue
	opts Options
	now  func() time.Time
	lg   *slog.Logger

	stripes [4096]sync.Mutex
	heads   headCache
	// order makes this node's ids in commit order (try); lastID is the
	// last id it made, under order.
	order  sync.Mutex
	lastID ulid.ULID
	// origin names this store in the heads it shares with the other
	// nodes (sharedheads.go); empty alone (one replica).
	origin   string
	headsSub *nats.Subscription
	replies  replies
	// unsure counts appends' attempts whose answer did not tell whether
	// they committed; adopted those that had (settle).
	unsure, adopted atomic.Int64

	entropy struct {
		sync.Mutex
		r *ulid.MonotonicEntropy
	}
	// comp caches the legal holds by their KV revision (compliance.go).
	comp holdList
	// logRoute and kvRoute (per bucket) send reads to the leader or,
	// while it is away, to any replica.
	logRoute route
	kvRoute  map[string]*route
	bad      atomic.Int64 // events that could not be decoded
	closed   atomic.Bool
	closing  atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup // probes (route)
	life     sync.Mutex     // orders spawn against Close

	// feedBatch is how many records a batched read of the feed asks
	// for at a time; 0 reads one record per request (After). Tests
	// lower it to cross batch boundaries.
	feedBatch int
	feedAt    feedPos
	// feedGets counts the batched gets of the feed, feedFallbacks the
	// reads that fell back to one record per request (tests check both).
	feedGets, feedFallbacks atomic.Int64
}

// Open creates the assets when they are missing (idempotently: every
// node does it at start) and returns the store. nc stays the caller's.
func Open(ctx context.Context, nc *nats.Conn, o Options) (*Store, error) {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Failover <= 0 {
		o.Failover = 20 * time.Second
	}
	if o.LeaderWait <= 0 {
		o.LeaderWait = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstore: %w", err)
	}
	s := &Store{nc: nc, js: js, opts: o, now: o.Now, lg: o.Logger, kv: map[string]jetstream.KeyValue{},
		kvRoute: map[string]*route{}, stop: make(chan struct{}), feedBatch: feedBatch}
	s.logRoute = route{stream: LogStream, probe: "tern.probe"}
	if s.now == nil {
		s.now = time.Now
	}
	s.heads.m = map[string]head{}
	if err := s.replies.start(nc); err != nil {
		return nil, fmt.Errorf("jetstore: reply subscription: %w", err)
	}
	if o.Replicas > 1 {
		s.origin = nuid.Next()
		if s.headsSub, err = nc.Subscribe(headsPrefix+"*", s.heardHeads); err != nil {
			return nil, fmt.Errorf("jetstore: heads subscription: %w", err)
		}
	}
	s.entropy.r = ulid.Monotonic(cryptoReader{}, 0)
	// A cluster that is still forming has no meta leader yet: retry
	// until ctx ends.
	err = retry(ctx, func(ctx context.Context) (err error) {
		s.log, err = js.CreateOrUpdateStream(ctx, LogConfig(o.Replicas))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstore: stream %s: %w", LogStream, err)
	}
	for _, b := range buckets {
		var kv jetstream.KeyValue
		err := retry(ctx, func(ctx context.Context) error { return s.leaderKV(ctx, b, &kv) })
		if err != nil {
			return nil, fmt.Errorf("jetstore: bucket %s: %w", b, err)
		}
		s.kv[b] = kv
		s.kvRoute[b] = &route{stream: "KV_" + b, probe: "$KV." + b + ".=probe"}
	}
	return s, nil
}

// leaderKV opens bucket b, creating its stream when missing with the
// configuration nats.go gives a KV bucket (history 1). Reads are Tern's
// (kvGet): from the stream leader, since a direct get may be answered by
// a replica that has not applied the latest write yet (a token made on
// one node, then an authentication on another, must see it); direct
// gets, allowed on the stream, serve them only while the leader is away
// (route). The bucket handle's own Get is then direct.
func (s *Store) leaderKV(ctx context.Context, b string, out *jetstream.KeyValue) error {
	_, err := s.js.CreateOrUpdateStream(ctx, kvConfig(b, s.opts.Replicas))
	if err != nil {
		return err
	}
	kv, err := s.js.KeyValue(ctx, b)
	if err != nil {
		return err
	}
	*out = kv
	return nil
}

// retry calls fn, each time with a 2 s deadline (an API request with no
// leader to answer waits out its context), until it succeeds or ctx
// ends (then fn's last error).
func retry(ctx context.Context, fn func(context.Context) error) error {
	pause := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

// LogConfig is the configuration of the log stream.
func LogConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:     LogStream,
		Subjects: []string{"tern.>"},
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
		// One value per subject: the stream is a map (see the package doc).
		MaxMsgsPerSubject: 1,
		// Reads go to the leader: a read sees every acknowledged append;
		// direct gets serve them only while the leader is away (route).
		AllowDirect:        true,
		AllowMsgTTL:        true,
		AllowAtomicPublish: true,
		// Tombstones and per-message TTLs need deletes and purges.
		DenyDelete: false,
	}
}

// Closing tells the store that the node is shutting down: requests are
// no longer retried through a leader election (the other nodes may be
// stopping too, and a last write would wait for a quorum that is gone).
func (s *Store) Closing() { s.closing.Store(true) }

// Close stops the store; later calls get ErrClosed. The connection is
// the caller's to close.
func (s *Store) Close() error {
	s.life.Lock()
	if s.closed.CompareAndSwap(false, true) {
		close(s.stop)
	}
	s.life.Unlock()
	s.wg.Wait()
	if s.headsSub != nil {
		_ = s.headsSub.Unsubscribe()
	}
	return nil
}

// spawn adds a goroutine to s.wg unless the store is closed; the caller
// starts it and it calls s.wg.Done.
func (s *Store) spawn() bool {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed.Load() {
		return false
	}
	s.wg.Add(1)
	return true
}

// Ready reports whether the store can serve.
func (s *Store) Ready() bool { return !s.closed.Load() && s.nc.IsConnected() }

// Unreadable counts stored events that could not be decoded.
func (s *Store) Unreadable() int64 { return s.bad.Load() }

// Size is the log stream's bytes as its leader reports them (-1 when
// unknown).
func (s *Store) Size() int64 {
	var info *jetstream.StreamInfo
	err := s.do(func(ctx context.Context) (err error) {
		info, err = s.log.Info(ctx)
		return err
	})
	if err != nil {
		return -1
	}
	return int64(info.State.Bytes)
}

// do runs one request to JetStream, retrying it while it fails the way a
// leader election makes requests fail (no responders, timeouts, "system
// temporarily unavailable") for up to Options.Failover: Raft elects a new
// leader 4–9 s after the old one died.
func (s *Store) do(fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(s.opts.Failover)
	pause := 100 * time.Millisecond
	for {
		if s.closed.Load() {
			return ErrClosed
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(s.opts.Timeout, 2*time.Second))
		err := fn(ctx)
		cancel()
		if err == nil || !transient(err) || time.Now().After(deadline) || s.closing.Load() {
			return err
		}
		select {
		case <-time.After(pause):
		case <-s.stop:
			return ErrClosed
		}
		pause = min(2*pause, time.Second)
	}
}

// transient reports errors that a leader election causes and that end
// once it is over (an object store Put's chunk whose answer never came
// times out as ErrAsyncPublishTimeout).
func transient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrAsyncPublishTimeout) || (errors.As(err, &apiErr) && apiErr.Code == 503)
}

// tok makes a subject token (and KV key part) of a name.
func tok(s string) string {
	if s == "" {
		return "="
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
		}
	}
	return s
}

// untok reverses tok.
func untok(t string) (string, error) {
	if b, ok := strings.CutPrefix(t, "="); ok {
		p, err := base64.RawURLEncoding.DecodeString(b)
		if err != nil {
			return "", fmt.Errorf("jetstore: bad token %q: %w", t, err)
		}
		return string(p), nil
	}
	return t, nil
}

// part is the partition of a name.
func part(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return strconv.Itoa(int(h.Sum32() % Partitions))
}

func subj(kind string, names ...string) string {
	var b strings.Builder
	b.WriteString("tern.")
	b.WriteString(kind)
	for _, n := range names {
		b.WriteByte('.')
		b.WriteString(n)
	}
	return b.String()
}

// Subjects of the layout (package doc).
func convHeadSubj(cv string) string      { return subj("hc", part(cv), tok(cv)) }
func auxHeadSubj(cv string) string       { return subj("ha", part(cv), tok(cv)) }
func userHeadSubj(uid string) string     { return subj("hu", part(uid), tok(uid)) }
func floorSubj(uid string) string        { return subj("fl", part(uid), tok(uid)) }
func groupSubj(gid string) string        { return subj("gr", tok(gid)) }
func memberSubj(gid, uid string) string  { return subj("mb", tok(gid), tok(uid)) }
func userConvSubj(uid, cv string) string { return subj("uc", tok(uid), tok(cv)) }
func dmFloorSubj(cv, uid string) string  { return subj("df", tok(cv), tok(uid)) }
func idSubj(id ulid.ULID) string {
	s := id.String()
	return subj("id", part(s), s)
}
func eventSubj(cv string, seq uint64) string {
	return subj("ev", part(cv), tok(cv), strconv.FormatUint(seq, 10))
}
func auxSubj(cv string, n uint64) string {
	return subj("ax", part(cv), tok(cv), strconv.FormatUint(n, 10))
}
func pointerSubj(uid string, us uint64) string {
	return subj("us", part(uid), tok(uid), strconv.FormatUint(us, 10))
}
func editSubj(tgt, id ulid.ULID) string {
	t := tgt.String()
	return subj("ed", part(t), t, id.String())
}
func markerSubj(cv, uid, k string) string { return subj("mk", part(cv), tok(cv), tok(uid), tok(k)) }
func reactSubj(id ulid.ULID, uid, k string) string {
	s := id.String()
	return subj("rx", part(s), s, tok(uid), tok(k))
}
func dedupeSubj(uid, did, cmid string) string {
	return subj("dd", part(uid), tok(uid), tok(did), tok(cmid))
}

// lastToken is the last dot-separated token of a subject, decoded.
func lastToken(subject string) (string, error) {
	i := strings.LastIndexByte(subject, '.')
	return untok(subject[i+1:])
}

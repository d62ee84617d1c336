// Package store is Tern's Badger keyspace: accounts and device tokens,
// per-user event streams, conversations and their indexes. The key layout
// is documented in docs/storage.md; every key starts with a one-byte table
// prefix so tables never interleave.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/disk"
	"github.com/tern-im/tern/internal/im"
)

// Errors returned by the store: the port errors of internal/im, so that
// callers match the domain's names and never this package's.
var (
	ErrNotFound = im.ErrNotFound
	ErrExists   = im.ErrExists
	ErrClosed   = im.ErrClosed
	// ErrTrimmed is returned by Stream for a cursor below the user's
	// stream floor: events after it have been trimmed by age.
	ErrTrimmed = im.ErrTrimmed
	// ErrGone is returned by Deduped when the command was done but the
	// event it produced no longer exists (trimmed or expired).
	ErrGone = im.ErrGone
	// ErrNoSpace is returned for writes refused while the data dir's
	// filesystem is below its free-space reserve (disk.ErrLow): it is
	// im.ErrNoSpace (507) and wraps disk.ErrLow.
	ErrNoSpace = fmt.Errorf("%w: %w", im.ErrNoSpace, disk.ErrLow)
)

// Table prefixes. A key is prefix byte + table-specific suffix.
const (
	tabMeta     byte = 0x01 // meta/{name}
	tabUser     byte = 0x02 // {uid}
	tabToken    byte = 0x03 // {sha256(token)}
	tabDevToken byte = 0x04 // {uid}\x00{did}\x00{token id}
)

// Options tunes Open.
type Options struct {
	// SyncWrites fsyncs each commit.
	SyncWrites bool
	// MemTableSize and BlockCacheSize bound memory (bytes).
	MemTableSize   int64
	BlockCacheSize int64
	// GCInterval is how often value-log GC runs; 0 disables it.
	GCInterval time.Duration
	// InMemory keeps everything in RAM (benchmarks only).
	InMemory bool
	Logger   *slog.Logger
	// Retention is the server default: the background trimmer deletes
	// stream entries and conversation events older than this, or than
	// their conversation's own retention (docs/storage.md). 0 keeps
	// everything forever unless a conversation has its own.
	Retention time.Duration
	// TrimEvery is how often the trimmer runs; 0 means DefaultTrimEvery.
	TrimEvery time.Duration
	// Now is the clock of the sequencer (event ts and ids) and of the
	// trimmer; nil means time.Now.
	Now func() time.Time
	// OnTrim, if set, is called after each background trimming pass.
	OnTrim func(TrimStats, error)
	// Commits, if set, receives every committed append in commit order
	// (im.Log). Appenders must Reserve a slot in it before Append.
	Commits *im.CommitStream
	// OnCommit, if set, is called by the sequencer after each committed
	// transaction with the number of events it appended (duplicates
	// excluded): for metrics. It must not block.
	OnCommit func(appended int)
	// Forget, if set, is told about conversation events the trimmer
	// removed and messages a delete made tombstones (the search index and
	// file references follow). It runs on the trimmer and sequencer
	// goroutines and must not block for long.
	Forget im.Forgetter
	// Disk, if set, refuses writes that would store something (appends,
	// accounts, tokens, new contacts and blocks) with ErrNoSpace while
	// the data dir's filesystem is below its reserve; a commit that fails
	// with ENOSPC trips it. Deletes, counters and presence records (one
	// per user, overwritten) are still written.
	Disk *disk.Guard
}

// Store is an open Badger database. It is safe for concurrent use.
type Store struct {
	db   *badger.DB
	log  *slog.Logger
	opts Options
	seq  *sequencer
	// heads caches stream heads (see heads).
	heads *heads
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	// bad counts and remembers unreadable records (integrity.go).
	bad badRecords
	// onCommit is Options.OnCommit.
	onCommit func(int)
	// dir is the data directory; empty in memory.
	dir string
	// holdCache keeps the legal holds (compliance.go).
	holdCache holdCache
	// trimmedAtt is told the attachments of messages trimmed by age
	// (SetTrimmedAttachments).
	trimmedAtt atomic.Pointer[func(fid string, id ulid.ULID)]
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if !o.InMemory {
		if err := prepareDir(dir, o.Logger); err != nil {
			return nil, err
		}
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{o.Logger}).
		WithSyncWrites(o.SyncWrites).
		WithNumVersionsToKeep(1).
		WithMetricsEnabled(false).
		WithNumCompactors(2).
		WithInMemory(o.InMemory)
	if o.InMemory {
		bo = bo.WithDir("").WithValueDir("")
	}
	if o.MemTableSize > 0 {
		bo = bo.WithMemTableSize(o.MemTableSize)
	}
	if o.BlockCacheSize > 0 {
		bo = bo.WithBlockCacheSize(o.BlockCacheSize)
	}
	// Values up to 1 KiB live in the LSM tree with their keys: small chat
	// events are read with one lookup and the value log stays small.
	bo = bo.WithValueThreshold(1 << 10)
	// Badger creates value-log files sparse and writes them through a
	// memory map, where a full filesystem is SIGBUS, not an error. Small
	// files (Badger's default is 1 GiB) bound what it can still write
	// into unallocated space once the disk reserve (internal/disk) stops
	// new writes; value-log GC also works in smaller steps.
	bo = bo.WithValueLogFileSize(64 << 20)
	db, err := openLocked(bo)
	if errors.Is(err, errLocked) {
		return nil, &InUseError{Dir: dir}
	}
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	if !o.InMemory {
		if err := tightenFiles(dir, o.Logger); err != nil {
			_ = db.Close() // the permission error is the one to report
			return nil, err
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{db: db, log: o.Logger, opts: o, stop: make(chan struct{}), onCommit: o.OnCommit}
	if !o.InMemory {
		s.dir = dir
	}
	s.heads = newHeads()
	s.seq = newSequencer(s, o.Now, o.Commits)
	if o.GCInterval > 0 && !o.InMemory {
		s.wg.Add(1)
		go s.gcLoop(o.GCInterval)
	}
	// The trimmer also runs without a default retention: conversations
	// may have their own (SetRetention). A pass with nothing to trim
	// reads one small table.
	if o.Retention > 0 || !o.InMemory {
		if o.TrimEvery <= 0 {
			o.TrimEvery = DefaultTrimEvery
		}
		s.wg.Add(1)
		go s.trimLoop(o)
	}
	return s, nil
}

// Close stops the sequencer (appends submitted afterwards fail with
// ErrClosed), the GC loop and the trimmer (between two of its
// transactions), flushes and closes the database. It is safe
// to call more than once.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.seq.close()
		close(s.stop)
		s.wg.Wait()
		err = s.db.Close()
	})
	return err
}

// writable returns ErrNoSpace while the disk guard refuses writes.
func (s *Store) writable() error {
	if err := s.opts.Disk.Err(); err != nil {
		return ErrNoSpace
	}
	return nil
}

// Ready reports whether the store is open.
func (s *Store) Ready() bool { return !s.db.IsClosed() }

// gcLoop runs value-log GC until Close. Each tick it rewrites files while
// Badger finds at least half of one to be garbage.
func (s *Store) gcLoop(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			for i := 0; i < 16; i++ { // bounded: at most 16 files a tick
				if err := s.db.RunValueLogGC(0.5); err != nil {
					if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
						s.log.Warn("value log gc", "error", err)
					}
					break
				}
			}
		}
	}
}

// Size returns the bytes the store's files take on disk (LSM tables,
// value log, manifest), read from the directory now: Badger's own Size
// is refreshed only once a minute. 0 for an in-memory store.
func (s *Store) Size() int64 {
	if s.dir == "" {
		return 0
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// InUseError is Open's error when another process (or another Open in
// this one) holds the data dir.
type InUseError struct{ Dir string }

func (e *InUseError) Error() string {
	return fmt.Sprintf("data dir %s is in use by another tern process", e.Dir)
}

// badgerLogger routes Badger's logging into slog, one level down: Badger is
// chatty at info.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(badgerLine(f, a), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(badgerLine(f, a), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Log(context.Background(), slog.LevelDebug, badgerLine(f, a), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {}

// badgerLine formats a Badger log line without the trailing newline
// Badger puts on most of them (slog would print it as a literal \n).
func badgerLine(f string, a []any) string {
	return strings.TrimRight(fmt.Sprintf(f, a...), "\n")
}

func key(tab byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += len(p) + 1
	}
	k := make([]byte, 0, n)
	k = append(k, tab)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// Incr atomically adds one to the named counter and returns the new value.
func (s *Store) Incr(name string) (uint64, error) {
	var n uint64
	err := s.db.Update(func(txn *badger.Txn) error {
		k := key(tabMeta, name)
		item, err := txn.Get(k)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("store: counter %q is %d bytes", name, len(v))
				}
				n = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return err
			}
		}
		n++
		return txn.Set(k, binary.BigEndian.AppendUint64(nil, n))
	})
	return n, err
}

// errLocked is openLocked's error when the data dir's lock stays taken.
var errLocked = errors.New("store: data dir locked")

// openLocked opens Badger, retrying for up to a second while the data
// dir's lock is taken. A lock can outlive its owner by a moment: a child
// process forked by this one (os/exec) holds a copy of the lock file's
// descriptor until it calls exec, so a data dir closed just before a fork
// elsewhere in the process is briefly still locked.
func openLocked(bo badger.Options) (*badger.DB, error) {
	wait := 10 * time.Millisecond
	deadline := time.Now().Add(time.Second)
	for {
		db, err := badger.Open(bo)
		if err == nil || !strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return db, err
		}
		if time.Now().After(deadline) {
			return nil, errLocked
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

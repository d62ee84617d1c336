// Package audit is Tern's audit trail (PROTOCOL §16): JSON Lines in a
// directory, one line per event, each line carrying in `prev` the SHA-256
// of the line before it, so an edited, inserted or removed line breaks
// the chain. Files rotate by size; the first line of a new file links to
// the last line of the previous one, and at start the last line on disk
// is read again, so the chain also survives restarts. Verify checks a
// chain. docs/compliance.md explains it to operators.
//
// Callers log through Log (or Count, for events that are aggregated per
// minute); one writer goroutine owns the files.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tern-im/tern/internal/codec"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Event types (PROTOCOL §16).
const (
	AuthLogin    = "auth.login"
	AuthLockout  = "auth.lockout"
	TokenCreate  = "token.create"
	TokenRevoke  = "token.revoke"
	UserCreate   = "user.create"
	UserDisable  = "user.disable"
	UserEnable   = "user.enable"
	UserDelete   = "user.delete"
	UserPasswd   = "user.passwd"
	UserTOTP     = "user.totp"
	AdminKick    = "admin.kick"
	ACLDeny      = "acl.deny"
	MsgDelete    = "msg.delete"
	DLPBlock     = "dlp.block"
	DLPFlag      = "dlp.flag"
	HoldAdd      = "hold.add"
	HoldRemove   = "hold.remove"
	Export       = "export"
	RetentionSet = "retention.set"
)

// Errors.
var (
	ErrClosed = errors.New("audit: log closed")
)

// Genesis is the prev of the very first line of a chain.
var Genesis = strings.Repeat("0", 64)

// Entry is one audited event. TS is set by Log when zero.
type Entry struct {
	TS     time.Time
	Type   string
	UID    string // the user concerned
	DID    string
	IP     string
	By     string // the acting admin ("admin-api", "cli:NAME") or user
	OK     bool
	Reason string
	Target string // what was acted on: a token id, a cv, a message id, a topic, a hold id
	// N counts aggregated events (Count): how many in the minute.
	N int
}

// line is the JSON shape of a line, fields in this order.
type line struct {
	TS     string `json:"ts"`
	Type   string `json:"type"`
	UID    string `json:"uid,omitempty"`
	DID    string `json:"did,omitempty"`
	IP     string `json:"ip,omitempty"`
	By     string `json:"by,omitempty"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
	Target string `json:"target,omitempty"`
	N      int    `json:"n,omitempty"`
	Prev   string `json:"prev"`
}

// TimeFormat is RFC 3339 with milliseconds, in UTC.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Logger is what the rest of Tern needs of the audit log: the hooks, the
// admin API, the service and the CLI take this interface.
type Logger interface {
	// Log records e. It may wait while the writer is behind (bounded
	// buffer); it never fails: a write error is logged by the writer.
	Log(e Entry)
	// Count aggregates e with the other entries of the same type, uid,
	// did, ip, target and reason in the current minute: one line with their
	// number N is written when the minute ends.
	Count(e Entry)
}

// Discard is a Logger that records nothing (audit.enabled: false).
var Discard Logger = discard{}

type discard struct{}

func (discard) Log(Entry)   {}
func (discard) Count(Entry) {}

// Options configures Open.
type Options struct {
	// Dir holds the files audit-NNNNNNNN.jsonl.
	Dir string
	// MaxFileSize rotates to a new file before a line would make the
	// current one larger; it must be at least 4 KiB.
	MaxFileSize int64
	// Stdout, when set, also gets every line (for log shippers).
	Stdout io.Writer
	// Buffer is how many entries may wait for the writer; 0 means 4,096.
	Buffer int
	// Window is the aggregation period of Count; 0 means a minute.
	Window time.Duration
	// MaxCounted bounds the distinct aggregated keys of one window;
	// beyond it an entry is written on its own. 0 means 10,000.
	MaxCounted int
	Log        *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	o    Options
	in   chan Entry
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	// mu guards closed against sends on a closing log.
	mu     sync.RWMutex
	closed bool

	// Owned by the writer goroutine.
	f *os.File
	// pending are the complete lines of the current batch: written with
	// one write call, so a killed process never leaves half a line.
	pending bytes.Buffer
	seq     int   // number of the current file
	size    int64 // bytes in the current file
	prev    string
	counts  map[countKey]*Entry
	order   []countKey

	// lines and failures count what was written and what failed (for
	// metrics).
	lines, failures atomic.Uint64
}

// Lines returns how many lines were written since Open.
func (l *Log) Lines() uint64 { return l.lines.Load() }

// Failures returns how many lines could not be written since Open.
func (l *Log) Failures() uint64 { return l.failures.Load() }

type countKey struct{ typ, uid, did, ip, target, reason string }

// Open opens (creating) the audit directory, finds the last line written
// and starts the writer goroutine.
func Open(o Options) (*Log, error) {
	if o.Dir == "" {
		return nil, errors.New("audit: Dir is required")
	}
	if o.MaxFileSize < 4<<10 {
		return nil, fmt.Errorf("audit: MaxFileSize %d is below 4KiB", o.MaxFileSize)
	}
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.MaxCounted <= 0 {
		o.MaxCounted = 10000
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit dir %q: %w", o.Dir, err)
	}
	l := &Log{o: o, in: make(chan Entry, o.Buffer), stop: make(chan struct{}), counts: map[countKey]*Entry{}}
	if err := l.resume(); err != nil {
		return nil, err
	}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// Files lists the audit files of dir in chain order.
func Files(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if _, ok := fileSeq(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out) // fixed-width numbers: name order is chain order
	return out, nil
}

func fileName(seq int) string { return fmt.Sprintf("audit-%08d.jsonl", seq) }

func fileSeq(name string) (int, bool) {
	var n int
	if len(name) != len("audit-00000000.jsonl") {
		return 0, false
	}
	if _, err := fmt.Sscanf(name, "audit-%08d.jsonl", &n); err != nil || fileName(n) != name {
		return 0, false
	}
	return n, true
}

// resume finds the newest file and its last line: the chain goes on from
// there (an empty newest file links to the file before it).
func (l *Log) resume() error {
	files, err := Files(l.o.Dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.prev = Genesis
	l.seq = 1
	for i := len(files) - 1; i >= 0; i-- {
		last, err := lastLine(files[i])
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if last != nil {
			l.prev = Hash(last)
			break
		}
	}
	if len(files) > 0 {
		l.seq, _ = fileSeq(filepath.Base(files[len(files)-1]))
	}
	return l.openFile()
}

func (l *Log) openFile() error {
	path := filepath.Join(l.o.Dir, fileName(l.seq))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close() // the stat error is the one to report
		return fmt.Errorf("audit: %w", err)
	}
	l.f, l.size = f, fi.Size()
	if fi.Size() > 0 {
		// A last line cut short (power loss): end it, so the next line
		// stands on its own; verify reports the cut line.
		var last [1]byte
		if _, err := f.ReadAt(last[:], fi.Size()-1); err == nil && last[0] != '\n' {
			l.o.Log.Warn("audit: the last line of the file is incomplete (a crash while writing); tern audit verify will report it", "file", path)
			l.pending.WriteByte('\n')
			l.size++
		}
	}
	return nil
}

// lastLine returns the last non-empty line of path (nil if none). A last
// line cut short by a crash (no newline) is still a line of the chain.
func lastLine(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// Lines are small; read backwards in growing windows.
	for win := int64(8 << 10); ; win *= 4 {
		off := max(fi.Size()-win, 0)
		buf := make([]byte, fi.Size()-off)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		buf = bytes.TrimRight(buf, "\n")
		if len(buf) == 0 {
			return nil, nil
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			return buf[i+1:], nil
		}
		if off == 0 {
			return buf, nil
		}
	}
}

// Hash is the prev of the line after ln (ln without its newline).
func Hash(ln []byte) string {
	s := sha256.Sum256(ln)
	return hex.EncodeToString(s[:])
}

// Log records e (see Logger).
func (l *Log) Log(e Entry) { l.send(e) }

// Count aggregates e per minute (see Logger).
func (l *Log) Count(e Entry) {
	e.N = max(e.N, 1)
	l.send(e)
}

func (l *Log) send(e Entry) {
	if e.TS.IsZero() {
		e.TS = l.o.Now()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.o.Log.Warn("audit: entry after close", "type", e.Type)
		return
	}
	l.in <- e // waits while the writer is behind: bounded, never dropped
}

// Close writes what is buffered and the pending aggregates, fsyncs and
// closes the file. Entries logged afterwards are dropped with a warning.
func (l *Log) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stop)
		l.wg.Wait()
		err = l.closeFile()
	})
	return err
}

func (l *Log) closeFile() error {
	err := l.writePending()
	if e := l.f.Sync(); err == nil {
		err = e
	}
	if e := l.f.Close(); err == nil {
		err = e
	}
	return err
}

func (l *Log) run() {
	defer l.wg.Done()
	t := time.NewTicker(l.o.Window)
	defer t.Stop()
	for {
		select {
		case e := <-l.in:
			l.take(e)
			// Drain what is waiting before one flush.
			for n := len(l.in); n > 0; n-- {
				l.take(<-l.in)
			}
			l.flush()
		case <-t.C:
			l.flushCounts()
			l.flush()
		case <-l.stop:
			for n := len(l.in); n > 0; n-- {
				l.take(<-l.in)
			}
			l.flushCounts()
			l.flush()
			return
		}
	}
}

func (l *Log) take(e Entry) {
	if e.N == 0 {
		l.write(e)
		return
	}
	k := countKey{e.Type, e.UID, e.DID, e.IP, e.Target, e.Reason}
	if c := l.counts[k]; c != nil {
		c.N += e.N
		return
	}
	if len(l.counts) >= l.o.MaxCounted {
		l.write(e)
		return
	}
	c := e
	l.counts[k] = &c
	l.order = append(l.order, k)
}

func (l *Log) flushCounts() {
	for _, k := range l.order {
		l.write(*l.counts[k])
	}
	clear(l.counts)
	l.order = l.order[:0]
}

func (l *Log) flush() {
	if err := l.writePending(); err != nil {
		l.o.Log.Error("audit: write", "error", err)
	}
}

// batch counts the lines of pending: written or failed as one.
func (l *Log) batch() uint64 { return uint64(bytes.Count(l.pending.Bytes(), []byte{'\n'})) }

// writePending writes the batch's lines to the file in one call, then
// copies them to Stdout.
func (l *Log) writePending() error {
	if l.pending.Len() == 0 {
		return nil
	}
	b := l.pending.Bytes()
	_, err := l.f.Write(b)
	if err != nil {
		l.failures.Add(l.batch())
	} else {
		l.lines.Add(l.batch())
	}
	if l.o.Stdout != nil {
		if _, err := l.o.Stdout.Write(bytes.TrimPrefix(b, []byte{'\n'})); err != nil {
			l.o.Log.Debug("audit: stdout copy", "error", err)
		}
	}
	l.pending.Reset()
	return err
}

// MaxField bounds each text field of a line: user names, ClientIDs and
// topics come from clients and may be 64 KiB.
const MaxField = 256

// clip cuts s to MaxField bytes on a rune boundary, marking the cut.
func clip(s string) string {
	if len(s) <= MaxField {
		return s
	}
	return codec.CutUTF8(s, MaxField-len("…")) + "…"
}

// Marshal is the line of e linked to prev, without the newline.
func Marshal(e Entry, prev string) ([]byte, error) {
	return json.Marshal(line{
		TS: e.TS.UTC().Format(TimeFormat), Type: clip(e.Type), UID: clip(e.UID), DID: clip(e.DID), IP: clip(e.IP),
		By: clip(e.By), OK: e.OK, Reason: clip(e.Reason), Target: clip(e.Target), N: e.N, Prev: prev,
	})
}

func (l *Log) write(e Entry) {
	b, err := Marshal(e, l.prev)
	if err != nil {
		l.o.Log.Error("audit: encode", "type", e.Type, "error", err)
		return
	}
	if l.size > 0 && l.size+int64(len(b))+1 > l.o.MaxFileSize {
		if err := l.rotate(); err != nil {
			l.o.Log.Error("audit: rotate", "error", err)
		}
	}
	l.pending.Write(b)
	l.pending.WriteByte('\n')
	l.size += int64(len(b)) + 1
	l.prev = Hash(b)
}

// rotate fsyncs and closes the current file and opens the next one.
func (l *Log) rotate() error {
	if err := l.closeFile(); err != nil {
		return err
	}
	l.seq++
	return l.openFile()
}

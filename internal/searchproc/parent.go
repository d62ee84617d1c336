package searchproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/search"
)

// Options configure a Worker.
type Options struct {
	// Dir is the index directory (the child opens it).
	Dir string
	// Index holds the index options the child uses: Batch, Poll, Settle,
	// Retention and PruneEvery (its Source, Log and Now are not used).
	Index search.Options
	// Source is the store the index follows (required).
	Source search.Source
	// Priority is how the child's threads are scheduled against the
	// broker's (required).
	Priority Priority
	// Log receives the child's log lines and the Worker's own (nil:
	// slog.Default()); Level is the child's log level.
	Log   *slog.Logger
	Level slog.Level
}

// How long the parent waits for the child.
const (
	callTimeout  = 10 * time.Second // a search, a Joined, a Kick
	forgetWait   = time.Minute      // a Forget (the trimmer's, not a user's)
	statsTimeout = 2 * time.Second  // a scrape
	closeWait    = 30 * time.Second // the child closing its index
	firstPause   = time.Second      // before the first restart
	maxPause     = 30 * time.Second // between restarts
	healthyRun   = time.Minute      // a child that lived this long restarts at once
)

var errClosed = errors.New("searchproc: closed")

// Worker is the parent's side of a search worker: the index, as the
// broker uses it (im.Searcher and im.Forgetter among others). Its methods
// are safe for concurrent use.
type Worker struct {
	o      Options
	params []byte

	restarts atomic.Uint64

	mu      sync.Mutex
	cur     *child // the newest child; nil before the first
	closed  bool
	lastLag time.Duration

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

var (
	_ im.Searcher  = (*Worker)(nil)
	_ im.Forgetter = (*Worker)(nil)
)

// Start starts the child process and keeps one running until Close.
func Start(o Options) (*Worker, error) {
	if o.Source == nil || o.Dir == "" || o.Index.Batch <= 0 || o.Index.PruneEvery <= 0 {
		return nil, errors.New("searchproc: Source, Dir, a positive Index.Batch and Index.PruneEvery are required")
	}
	if !o.Priority.Valid() {
		return nil, fmt.Errorf("searchproc: priority %q is not idle, low or normal", o.Priority)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p, err := json.Marshal(params{
		Dir: o.Dir, Batch: o.Index.Batch, Poll: o.Index.Poll, Settle: o.Index.Settle,
		Retention: o.Index.Retention, PruneEvery: o.Index.PruneEvery, Priority: o.Priority, Level: o.Level,
	})
	if err != nil {
		return nil, fmt.Errorf("searchproc: params: %w", err)
	}
	w := &Worker{o: o, params: p, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	c, err := w.spawn()
	if err != nil {
		return nil, err
	}
	w.wg.Add(2)
	go w.supervise(c)
	go w.kicker()
	return w, nil
}

// child is one child process and the parent's ends of its sockets.
type child struct {
	cmd   *exec.Cmd
	idx   *rpc.Client
	src   net.Conn
	start time.Time
	// exited is set (under Worker.mu) once the process is gone.
	exited bool
}

// spawn starts a child and installs it as the one calls go to.
func (w *Worker) spawn() (*child, error) {
	// The very binary this process runs, even after an upgrade replaced
	// or removed its file: a child of another version might not speak
	// this one's protocol.
	exe := "/proc/self/exe"
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("searchproc: find own binary: %w", err)
		}
	}
	var args []string
	if testing.Testing() {
		// A test binary whose TestMain does not run Serve must not run
		// its tests again: with this it runs none, and exits.
		args = []string{"-test.run=^$"}
	}
	// For ps: the environment makes it a worker; main never reads this.
	args = append(args, "search-worker")
	idxParent, idxChild, err := socketPair("index")
	if err != nil {
		return nil, err
	}
	srcParent, srcChild, err := socketPair("source")
	if err != nil {
		return nil, errors.Join(err, idxParent.Close(), idxChild.Close())
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		return nil, errors.Join(err, idxParent.Close(), idxChild.Close(), srcParent.Close(), srcChild.Close())
	}
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = os.Args[0] // as the broker was started, not /proc/self/exe
	cmd.Env = append(os.Environ(), envWorker+"="+string(w.params))
	cmd.ExtraFiles = []*os.File{idxChild, srcChild} // fdIndex, fdSource
	cmd.Stdout, cmd.Stderr = logW, logW
	err = cmd.Start()
	// The child has its own copies now.
	closeErr := errors.Join(idxChild.Close(), srcChild.Close(), logW.Close())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("searchproc: start worker: %w", err), closeErr,
			idxParent.Close(), srcParent.Close(), logR.Close())
	}
	if closeErr != nil {
		w.o.Log.Warn("search: close the worker's ends of its sockets", "error", closeErr)
	}
	go w.relay(logR)
	srv := rpc.NewServer()
	if err := srv.RegisterName("Source", &sourceService{src: w.o.Source}); err != nil {
		_ = cmd.Process.Kill() // the registration error is the one to report
		return nil, err
	}
	go srv.ServeConn(srcParent)
	c := &child{cmd: cmd, idx: rpc.NewClient(idxParent), src: srcParent, start: time.Now()}
	w.mu.Lock()
	if w.closed {
		// Close ran while this child started: it would not stop it.
		w.mu.Unlock()
		_ = c.idx.Close() // EOF tells the child to exit
		_ = cmd.Wait()    // its exit status says nothing here
		_ = srcParent.Close()
		return nil, errClosed
	}
	w.cur = c
	w.mu.Unlock()
	w.o.Log.Debug("search: worker started", "pid", cmd.Process.Pid, "priority", w.o.Priority)
	return c, nil
}

// socketPair returns the two ends of a connected Unix socket: the
// parent's as a net.Conn, the child's as a file to hand down.
func socketPair(name string) (net.Conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("searchproc: %s socket pair: %w", name, err)
	}
	pf := os.NewFile(uintptr(fds[0]), name)
	pc, err := net.FileConn(pf)
	if cerr := pf.Close(); err == nil {
		err = cerr
	}
	cf := os.NewFile(uintptr(fds[1]), name)
	if err != nil {
		if pc != nil {
			_ = pc.Close() // the first error is the one to report
		}
		return nil, nil, errors.Join(fmt.Errorf("searchproc: %s socket: %w", name, err), cf.Close())
	}
	return pc, cf, nil
}

// supervise waits for the child to exit and starts another, pausing
// longer after each quick death, until Close.
func (w *Worker) supervise(c *child) {
	defer w.wg.Done()
	pause := firstPause
	for {
		err := c.cmd.Wait()
		w.mu.Lock()
		c.exited = true
		closed := w.closed
		w.mu.Unlock()
		_ = c.idx.Close() // done with this child; its errors say nothing new
		_ = c.src.Close()
		if closed {
			return
		}
		if time.Since(c.start) > healthyRun {
			pause = firstPause
		}
		for {
			w.o.Log.Error("search: the worker process exited; starting another", "error", err, "in", pause)
			select {
			case <-w.stop:
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, maxPause)
			w.mu.Lock()
			closed := w.closed
			w.mu.Unlock()
			if closed {
				return
			}
			if c, err = w.spawn(); err == nil {
				w.restarts.Add(1)
				break
			} else if errors.Is(err, errClosed) {
				return
			}
		}
	}
}

// relay copies the child's log lines (JSON, one per line) into the
// parent's log; anything else (a panic's trace) is logged as an error.
func (w *Worker) relay(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			w.o.Log.Error("search worker: " + sc.Text())
			continue
		}
		var lv slog.Level
		if s, ok := rec[slog.LevelKey].(string); !ok || lv.UnmarshalText([]byte(s)) != nil {
			lv = slog.LevelInfo
		}
		msg, _ := rec[slog.MessageKey].(string)
		delete(rec, slog.TimeKey)
		delete(rec, slog.LevelKey)
		delete(rec, slog.MessageKey)
		keys := make([]string, 0, len(rec))
		for k := range rec {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		attrs := []any{"proc", "search-worker"}
		for _, k := range keys {
			attrs = append(attrs, k, rec[k])
		}
		w.o.Log.Log(context.Background(), lv, msg, attrs...)
	}
	// A line too long to scan: keep draining, or the child blocks.
	_, _ = io.Copy(io.Discard, r)
}

// kicker forwards Kick to the child, at most one call at a time and one
// per Settle: the index would not run more often anyway.
func (w *Worker) kicker() {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		// A lost kick costs at most one Poll: the child polls too.
		_ = w.call("Index.Kick", struct{}{}, &struct{}{}, callTimeout)
		if s := w.o.Index.Settle; s > 0 {
			select {
			case <-w.stop:
				return
			case <-time.After(s):
			}
		}
	}
}

// call calls the child, failing with im.ErrSearchUnavailable when no
// child runs, it died meanwhile, or it did not answer within timeout.
func (w *Worker) call(method string, args, reply any, timeout time.Duration) error {
	w.mu.Lock()
	c := w.cur
	live := c != nil && !c.exited
	w.mu.Unlock()
	if !live {
		return im.ErrSearchUnavailable
	}
	call := c.idx.Go(method, args, reply, make(chan *rpc.Call, 1))
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-call.Done:
		if errors.Is(call.Error, rpc.ErrShutdown) || errors.Is(call.Error, io.ErrUnexpectedEOF) {
			return im.ErrSearchUnavailable
		}
		return call.Error
	case <-t.C:
		w.o.Log.Warn("search: the worker did not answer", "call", method, "in", timeout)
		return im.ErrSearchUnavailable
	}
}

// Search implements im.Searcher.
func (w *Worker) Search(q im.SearchQuery) ([]im.Hit, bool, error) {
	var r SearchReply
	if err := w.call("Index.Search", q, &r, callTimeout); err != nil {
		return nil, false, err
	}
	return r.Hits, r.More, nil
}

// Joined implements im.Searcher.
func (w *Worker) Joined(uid string) ([]string, error) {
	var r []string
	if err := w.call("Index.Joined", uid, &r, callTimeout); err != nil {
		return nil, err
	}
	return r, nil
}

// Forget implements im.Forgetter. The index also drops what the server
// retention removes on its own; a conversation's own retention that a
// failed Forget missed stays in the index until a reindex, but a search
// never shows it, since every hit is read back from the store.
func (w *Worker) Forget(evs []im.Forgotten) {
	if err := w.call("Index.Forget", evs, &struct{}{}, forgetWait); err != nil {
		w.o.Log.Warn("search: forget trimmed messages", "count", len(evs), "error", err)
	}
}

// Kick tells the index that events were committed (without blocking).
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Wait returns once the index has indexed every event up to id, or with
// ctx's error (a minute when ctx has no deadline), or an error when the
// worker is not running.
func (w *Worker) Wait(ctx context.Context, id ulid.ULID) error {
	timeout := time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	err := w.call("Index.Wait", WaitArgs{ID: id, Timeout: timeout}, &struct{}{}, timeout+time.Second)
	if err != nil && err.Error() == context.DeadlineExceeded.Error() {
		return context.DeadlineExceeded // net/rpc carries an error as its text
	}
	return err
}

// Lag is the index's lag (search.Index.Lag) at its last pass; when the
// child does not answer, the last lag it reported.
func (w *Worker) Lag() time.Duration {
	var s Stats
	err := w.call("Index.Stats", struct{}{}, &s, statsTimeout)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.lastLag = s.Lag
	}
	return w.lastLag
}

// Cursor is the id of the last event the index took (zero: none, or the
// child does not answer).
func (w *Worker) Cursor() ulid.ULID {
	var s Stats
	if err := w.call("Index.Stats", struct{}{}, &s, statsTimeout); err != nil {
		return ulid.ULID{}
	}
	return s.Cursor
}

// Bytes is the index's size on disk.
func (w *Worker) Bytes() int64 { return search.DirBytes(w.o.Dir) }

// Restarts counts the children started after the first (each one after
// a child died).
func (w *Worker) Restarts() uint64 { return w.restarts.Load() }

// Pid is the process id of the running child (0: none), for tests and
// the operator's tools.
func (w *Worker) Pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == nil || w.cur.exited {
		return 0
	}
	return w.cur.cmd.Process.Pid
}

// Close stops the child (it closes its index first) and waits for it;
// a child that does not exit within 30 s is killed.
func (w *Worker) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	c := w.cur
	live := c != nil && !c.exited
	w.mu.Unlock()
	close(w.stop)
	if live {
		// The child's server returns on EOF, closes the index and exits.
		_ = c.idx.Close() // its error says nothing the exit does not
	}
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		w.o.Log.Error("search: the worker did not exit; killing it", "in", closeWait)
		if c != nil {
			_ = c.cmd.Process.Kill() // Wait in supervise reports it
		}
		<-done
	}
	if c != nil && c.cmd.ProcessState != nil && !c.cmd.ProcessState.Success() {
		return fmt.Errorf("searchproc: worker: %s", c.cmd.ProcessState)
	}
	return nil
}

// sourceService is what the parent serves the child: the store.
type sourceService struct{ src search.Source }

func (s *sourceService) After(a AfterArgs, r *[]im.Event) (err error) {
	*r, err = s.src.After(a.After, a.Max)
	return err
}

func (s *sourceService) EventByID(id ulid.ULID, r *im.Event) (err error) {
	*r, err = s.src.EventByID(id)
	return err
}

package searchproc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/internal/searchproc"
	"github.com/tern-im/tern/internal/store"
)

// envParent makes the test binary a parent process that starts a worker
// over the store in that dir, prints "PID n" and waits to be killed.
const envParent = "TERN_TEST_SEARCH_PARENT"

func TestMain(m *testing.M) {
	if searchproc.IsWorker() {
		if err := searchproc.Serve(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if dir := os.Getenv(envParent); dir != "" {
		if err := runParent(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runParent(dir string) error {
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	w, err := searchproc.Start(options(dir, st, slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		return err
	}
	fmt.Printf("PID %d\n", w.Pid())
	select {} // until killed
}

func options(dir string, st *store.Store, log *slog.Logger) searchproc.Options {
	return searchproc.Options{
		Dir:    filepath.Join(dir, "search"),
		Index:  search.Options{Batch: 64, PruneEvery: time.Hour},
		Source: st, Priority: searchproc.PriorityIdle, Log: log, Level: slog.LevelInfo,
	}
}

type env struct {
	t  *testing.T
	st *store.Store
	w  *searchproc.Worker
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	w, err := searchproc.Start(options(dir, st, slog.New(slog.NewTextHandler(tlog{t}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return &env{t: t, st: st, w: w}
}

// tlog writes log lines to the test's log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (e *env) msg(cv, from, b string) im.Event {
	e.t.Helper()
	a := &im.Append{CV: cv, Event: im.Event{T: im.TMsg, From: from, B: b}}
	if err := e.st.Append(a); err != nil {
		e.t.Fatal(err)
	}
	e.w.Kick()
	return a.Event
}

func (e *env) indexed(ev im.Event) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.w.Wait(ctx, ev.ID); err != nil {
		e.t.Fatalf("index did not reach %s: %v", ev.ID, err)
	}
}

// find searches cv for q and returns the hits' snippets.
func (e *env) find(cv, q string) ([]string, error) {
	terms, err := im.ParseSearch(q)
	if err != nil {
		e.t.Fatal(err)
	}
	hits, _, err := e.w.Search(im.SearchQuery{Terms: terms, Convs: []im.ConvWindow{{CV: cv, Window: im.Open}}, Max: 10})
	hl := make([]string, len(hits))
	for i, h := range hits {
		hl[i] = h.HL
	}
	return hl, err
}

func TestWorkerSearches(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.msg("d:alice:bob", "alice", "the launch is at noon")
	e.msg("d:alice:bob", "bob", "Crème brûlée after the launch")
	last := e.msg("d:alice:carol", "alice", "no launch here")
	e.indexed(last)

	hl, err := e.find("d:alice:bob", "LAUNCH creme")
	if err != nil || len(hl) != 1 || !strings.Contains(hl[0], "<mark>Crème</mark>") {
		t.Fatalf("search: %q %v", hl, err)
	}
	hl, err = e.find("d:alice:bob", "launch")
	if err != nil || len(hl) != 2 {
		t.Fatalf("search launch: %q %v", hl, err)
	}

	// Retention's Forget reaches the child.
	e.w.Forget([]im.Forgotten{{CV: "d:alice:carol", ID: last.ID}})
	if hl, err = e.find("d:alice:carol", "launch"); err != nil || len(hl) != 0 {
		t.Fatalf("forgotten message found: %q %v", hl, err)
	}
	if e.w.Lag() != 0 || e.w.Cursor() != last.ID || e.w.Bytes() <= 0 {
		t.Fatalf("lag %v cursor %s (want %s) bytes %d", e.w.Lag(), e.w.Cursor(), last.ID, e.w.Bytes())
	}

	// Every thread of the child runs at SCHED_IDLE and nice 19.
	pid := e.w.Pid()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	for _, task := range tasks {
		if n, policy := sched(t, fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name())); n != 19 || policy != unix.SCHED_IDLE {
			t.Errorf("thread %s of the worker runs at nice %d, policy %d", task.Name(), n, policy)
		}
	}
	if n, policy := sched(t, "/proc/self/stat"); n != 0 || policy != unix.SCHED_NORMAL {
		t.Errorf("the parent runs at nice %d, policy %d", n, policy)
	}

	// Close stops the child.
	if err := e.w.Close(); err != nil {
		t.Fatal(err)
	}
	if running(pid) {
		t.Fatalf("worker %d still there after Close", pid)
	}
	if _, err := e.find("d:alice:bob", "launch"); !errors.Is(err, im.ErrSearchUnavailable) {
		t.Fatalf("search after Close: %v", err)
	}
}

// sched reads the nice value (field 19) and the scheduling policy (field
// 41) from a /proc stat file.
func sched(t *testing.T, path string) (nice, policy int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count after its ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	nice, err1 := strconv.Atoi(f[16])
	policy, err2 := strconv.Atoi(f[38])
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return nice, policy
}

func TestWorkerRestartsAfterKill(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.indexed(e.msg("d:alice:bob", "alice", "before the crash"))
	old := e.w.Pid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Written while no child runs: the next one indexes it from the
	// cursor the first one stored.
	after := e.msg("d:alice:bob", "alice", "after the crash")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pid := e.w.Pid(); pid != 0 && pid != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new worker after 30 s")
		}
		time.Sleep(10 * time.Millisecond) // polling the supervisor
	}
	e.indexed(after)
	hl, err := e.find("d:alice:bob", "crash")
	if err != nil || len(hl) != 2 {
		t.Fatalf("after the restart: %q %v", hl, err)
	}
}

func TestWorkerExitsWithParent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envParent+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = tlog{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it is killed below; this is for a failure before
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("parent said %q: %v", line, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "PID ")))
	if err != nil || pid == 0 {
		t.Fatalf("parent said %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The worker was the killed parent's child: once it exits it is gone,
	// or a zombie where nothing reaps orphans (a container's init).
	deadline := time.Now().Add(30 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("worker %d outlived its parent by 30 s", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling another process
	}
}

// running reports whether process pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

package searchproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/rpc"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/sys/unix"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/search"
)

// envWorker names the environment variable that makes a process a search
// worker; its value is the worker's params as JSON.
const envWorker = "TERN_SEARCH_WORKER"

// File descriptors the parent hands the child (os/exec's ExtraFiles
// start at 3).
const (
	fdIndex  = 3 // the child serves Index on it
	fdSource = 4 // the parent serves Source on it
)

// IsWorker reports whether this process was started as a search worker:
// main (or a test binary's TestMain) then runs Serve and nothing else.
func IsWorker() bool { return os.Getenv(envWorker) != "" }

// params is what the parent tells the child.
type params struct {
	Dir                                 string
	Batch                               int
	Poll, Settle, Retention, PruneEvery time.Duration
	Priority                            Priority
	Level                               slog.Level
}

// Serve runs this process as the search worker: it lowers its CPU
// priority, opens the index, follows the parent's store and answers the
// parent until the parent closes its end (or dies), then closes the
// index. Call it only when IsWorker.
func Serve() error {
	var p params
	if err := json.Unmarshal([]byte(os.Getenv(envWorker)), &p); err != nil {
		return fmt.Errorf("searchproc: read params: %w", err)
	}
	// The parent relays these lines into its own log.
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: p.Level}))
	if p.Priority != PriorityNormal {
		if err := lowerPriority(p.Priority); err != nil {
			log.Warn("search: could not lower the worker's CPU priority", "priority", p.Priority, "error", err)
		}
	}
	idxConn, err := fileConn(fdIndex, "index")
	if err != nil {
		return err
	}
	srcConn, err := fileConn(fdSource, "source")
	if err != nil {
		return errors.Join(err, idxConn.Close())
	}
	src := &remoteSource{c: rpc.NewClient(srcConn)}
	x, err := search.Open(p.Dir, search.Options{
		Source: src, Batch: p.Batch, Poll: p.Poll, Settle: p.Settle,
		Retention: p.Retention, PruneEvery: p.PruneEvery, Log: log,
	})
	if err != nil {
		return errors.Join(err, idxConn.Close(), src.c.Close())
	}
	x.Start()
	srv := rpc.NewServer()
	if err := srv.RegisterName("Index", &indexService{x: x}); err != nil {
		return errors.Join(err, x.Close(), idxConn.Close(), src.c.Close())
	}
	srv.ServeConn(idxConn) // until the parent closes its end
	// Close waits for a pass in progress, which may still read the
	// source: close that connection after.
	return errors.Join(x.Close(), src.c.Close())
}

// Priority is how the child's threads are scheduled against the
// broker's.
type Priority string

const (
	// PriorityIdle: SCHED_IDLE (and nice 19). The kernel runs the child
	// only on CPU time no other task wants, and a waking broker thread
	// preempts it at once.
	PriorityIdle Priority = "idle"
	// PriorityLow: nice 19. The child gets about 1/70 of a busy core
	// beside a broker thread, but keeps its time slice when one wakes.
	PriorityLow Priority = "low"
	// PriorityNormal: as the broker.
	PriorityNormal Priority = "normal"
)

// Valid reports whether p is one of the priorities.
func (p Priority) Valid() bool {
	return p == PriorityIdle || p == PriorityLow || p == PriorityNormal
}

// lowerPriority schedules every thread of this process at p. Linux keeps
// the policy and nice value per thread and a new thread takes its
// creator's, so after two passes (the second catches threads made during
// the first) every thread the runtime makes from then on starts low too.
func lowerPriority(p Priority) error {
	set := func(tid int) error {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, 19); err != nil {
			return fmt.Errorf("setpriority %d: %w", tid, err)
		}
		if p == PriorityIdle {
			a := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: 19}
			if err := unix.SchedSetAttr(tid, &a, 0); err != nil {
				return fmt.Errorf("sched_setattr %d: %w", tid, err)
			}
		}
		return nil
	}
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := set(tid); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
		}
	}
	return nil
}

// fileConn turns an inherited socket descriptor into a net.Conn.
func fileConn(fd uintptr, name string) (net.Conn, error) {
	f := os.NewFile(fd, name)
	if f == nil {
		return nil, fmt.Errorf("searchproc: no file descriptor %d (%s)", fd, name)
	}
	c, err := net.FileConn(f) // a duplicate: f can go
	if cerr := f.Close(); err == nil && cerr != nil {
		_ = c.Close() // the close error is the one to report
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("searchproc: %s socket: %w", name, err)
	}
	return c, nil
}

// remoteSource is the parent's store, as the index reads it.
type remoteSource struct{ c *rpc.Client }

var _ search.Source = (*remoteSource)(nil)

func (s *remoteSource) After(after ulid.ULID, max int) ([]im.Event, error) {
	var evs []im.Event
	if err := s.c.Call("Source.After", AfterArgs{After: after, Max: max}, &evs); err != nil {
		return nil, err
	}
	return evs, nil
}

func (s *remoteSource) EventByID(id ulid.ULID) (im.Event, error) {
	var ev im.Event
	if err := s.c.Call("Source.EventByID", id, &ev); err != nil {
		// net/rpc carries an error as its text.
		if err.Error() == im.ErrNotFound.Error() {
			return im.Event{}, im.ErrNotFound
		}
		return im.Event{}, err
	}
	return ev, nil
}

// indexService is what the child serves the parent. Its methods have the
// shape net/rpc wants.
type indexService struct{ x *search.Index }

// SearchReply is the answer to Index.Search.
type SearchReply struct {
	Hits []im.Hit
	More bool
}

// WaitArgs ask Index.Wait to return once the index holds ID, or to fail
// after Timeout.
type WaitArgs struct {
	ID      ulid.ULID
	Timeout time.Duration
}

// Stats is the answer to Index.Stats.
type Stats struct {
	Lag    time.Duration
	Cursor ulid.ULID
}

// AfterArgs are the arguments of Source.After.
type AfterArgs struct {
	After ulid.ULID
	Max   int
}

func (s *indexService) Search(q im.SearchQuery, r *SearchReply) (err error) {
	r.Hits, r.More, err = s.x.Search(q)
	return err
}

func (s *indexService) Joined(uid string, r *[]string) (err error) {
	*r, err = s.x.Joined(uid)
	return err
}

func (s *indexService) Forget(evs []im.Forgotten, _ *struct{}) error {
	s.x.Forget(evs)
	return nil
}

func (s *indexService) Kick(_ struct{}, _ *struct{}) error {
	s.x.Kick()
	return nil
}

func (s *indexService) Wait(a WaitArgs, _ *struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	return s.x.Wait(ctx, a.ID)
}

func (s *indexService) Stats(_ struct{}, r *Stats) error {
	r.Lag, r.Cursor = s.x.Lag(), s.x.Cursor()
	return nil
}

//go:build bound

package jetstore

// A build with the bound tag measures what no cluster design can beat on
// a machine: an append (other than marks) writes the least a replicated,
// acknowledged DM must write, and nothing else. It is an instrument, not
// a store: positions come from node-local counters, so they are wrong
// across nodes, and nothing can be read back. docs/bench.md uses it:
//
//	TERN_BOUND=group go test -tags bound -run '^$' -bench 'DM$' ./internal/cluster
//
// TERN_BOUND selects what an append writes:
//
//	none   nothing: the cost of everything but the store
//	one    one JetStream message (a plain publish, no batch, no
//	       compare-and-set), acknowledged by the stream leader
//	group  as one, but the appends waiting on a node share one message
//	       (a group commit; TERN_BOUND_INFLIGHT messages in flight per
//	       node, 1 by default)

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

func init() {
	mode := os.Getenv("TERN_BOUND")
	inflight, err := strconv.Atoi(os.Getenv("TERN_BOUND_INFLIGHT"))
	if err != nil || inflight < 1 {
		inflight = 1
	}
	switch mode {
	case "none", "one", "group":
	default:
		panic(fmt.Sprintf("jetstore: bound build: TERN_BOUND=%q, want none, one or group", mode))
	}
	var mu sync.Mutex
	counters := map[*Store]map[string]uint64{}
	groups := map[*Store]chan boundWrite{}
	appendBound = func(s *Store, a *im.Append) error {
		mu.Lock()
		c := counters[s]
		if c == nil {
			c = map[string]uint64{}
			counters[s] = c
		}
		c["c"+a.CV]++
		seq := c["c"+a.CV]
		a.US = make([]uint64, len(a.To))
		for i, uid := range a.To {
			c["u"+uid]++
			a.US[i] = c["u"+uid]
		}
		q := groups[s]
		if q == nil && mode == "group" {
			q = make(chan boundWrite, 4096)
			groups[s] = q
			for range inflight {
				go s.boundCommitter(q)
			}
		}
		mu.Unlock()

		ms := uint64(max(s.now().UnixMilli(), 0))
		s.entropy.Lock()
		id, err := ulid.New(ms, s.entropy.r)
		s.entropy.Unlock()
		if err != nil {
			return err
		}
		ev := &a.Event
		ev.CV, ev.ID, ev.Seq, ev.TS = a.CV, id, seq, int64(ms)
		v, err := codec.MarshalStored(ev)
		if err != nil {
			return err
		}
		switch mode {
		case "one":
			err = s.boundPublish(v)
		case "group":
			w := boundWrite{v: v, done: make(chan error, 1)}
			q <- w
			err = <-w.done
		}
		if err != nil {
			return err
		}
		s.committed(a)
		return nil
	}
}

type boundWrite struct {
	v    []byte
	done chan error
}

// boundCommitter writes the appends waiting in q, all of them in one
// message, one message at a time.
func (s *Store) boundCommitter(q chan boundWrite) {
	for w := range q {
		ws, data := []boundWrite{w}, append([]byte(nil), w.v...)
	more:
		for len(ws) < 1024 {
			select {
			case w := <-q:
				ws, data = append(ws, w), append(data, w.v...)
			default:
				break more
			}
		}
		err := s.boundPublish(data)
		for _, w := range ws {
			w.done <- err
		}
	}
}

// boundPublish stores v as one message of the log stream, on a subject
// of its own, and waits for the stream's acknowledgement.
func (s *Store) boundPublish(v []byte) error {
	m := nats.NewMsg("tern.bound." + nuid.Next())
	m.Data = v
	reply, err := s.nc.RequestMsg(m, s.opts.Timeout)
	if err != nil {
		return err
	}
	var ack pubAck
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return err
	}
	if ack.Error != nil {
		return fmt.Errorf("jetstore: bound: %s (%d)", ack.Error.Desc, ack.Error.ErrCode)
	}
	return nil
}

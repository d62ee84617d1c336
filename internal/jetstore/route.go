package jetstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// route is where the reads of one stream (the log or a bucket) go.
//
// A read goes to the stream's leader, which has applied every
// acknowledged write: reads are linearizable. When the leader stops
// answering (its node died, and JetStream elects a new one 4–9 s
// later), reads that find it silent for Options.LeaderWait go to any
// replica instead (JetStream direct get, allow_direct: the node's own
// replica answers), until a probe finds a leader answering again. A
// replica has applied every write whose commit reached it; the leader
// sends each commit to its followers as it learns of it, before its
// acknowledgement leaves, so a replica misses an acknowledged write only
// if the leader died in between (TestFailover counts the first syncs
// after a kill that lack an acknowledged event: 2 in 55 trials).
// Writes still need the leader: they wait for the election.
type route struct {
	stream string
	// down is when a leader read of the stream first went unanswered
	// (unix ns) since the last answered one; 0 while the leader answers.
	down    atomic.Int64
	probing atomic.Bool
	// probe is a subject whose leader read tells that a leader answers
	// (a missing message is an answer).
	probe string
}

// away reports whether the leader has been silent for at least wait.
func (r *route) away(wait time.Duration) bool {
	d := r.down.Load()
	return d != 0 && time.Since(time.Unix(0, d)) >= wait
}

// answered records the outcome of a leader read that started at start;
// fell reports whether it found the leader newly silent.
func (r *route) answered(err error, start time.Time) (fell bool) {
	if err == nil || !transient(err) {
		r.down.Store(0)
		return false
	}
	return r.down.CompareAndSwap(0, start.UnixNano())
}

// up records that the leader answered (a read, or a write: a commit it
// acknowledged); reads go to it again.
func (r *route) up() { r.down.Store(0) }

// read runs one read of r's stream through s.do: leader reads from the
// leader, or, while it is away, direct from any replica (see route).
func (s *Store) read(r *route, leader, direct func(context.Context) error) error {
	wait := s.opts.LeaderWait
	directly := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return direct(ctx)
	}
	return s.do(func(ctx context.Context) error {
		if r.away(wait) {
			s.startProbe(r)
			if err := directly(); err == nil || !transient(err) {
				return err
			}
			// No replica answered either: ask the leader as usual.
		}
		lctx, cancel := context.WithTimeout(ctx, wait)
		start := time.Now()
		err := leader(lctx)
		cancel()
		if r.answered(err, start) {
			// One node died: the leaders it held of other streams are
			// gone too. Probe them all now rather than each on its first
			// read.
			s.probeAll()
		}
		if err != nil && transient(err) && r.away(wait) {
			s.startProbe(r)
			return directly()
		}
		return err
	})
}

// probeAll probes every route (startProbe).
func (s *Store) probeAll() {
	s.startProbe(&s.logRoute)
	for _, r := range s.kvRoute {
		s.startProbe(r)
	}
}

// startProbe asks r's leader, then every LeaderWait/4 while it is
// silent, until one answers (then reads go to it again) or the store
// closes; one probe per route at a time.
func (s *Store) startProbe(r *route) {
	if !r.probing.CompareAndSwap(false, true) {
		return
	}
	if !s.spawn() {
		r.probing.Store(false)
		return
	}
	go func() {
		defer s.wg.Done()
		defer r.probing.Store(false)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.LeaderWait)
			start := time.Now()
			_, err := s.leaderGet(ctx, r.stream, msgGetReq{LastFor: r.probe})
			cancel()
			r.answered(err, start)
			if r.down.Load() == 0 {
				return
			}
			select {
			case <-time.After(s.opts.LeaderWait / 4):
			case <-s.stop:
				return
			}
		}
	}()
}

// msgGetReq is JetStream's message get request ($JS.API.STREAM.MSG.GET).
type msgGetReq struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// leaderGet gets one message from the stream's leader. nats.go's stream
// handle would do the same but switches every get to direct once the
// stream allows direct gets; Tern chooses per read (route).
func (s *Store) leaderGet(ctx context.Context, stream string, req msgGetReq) (*jetstream.RawStreamMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	m, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("jetstore: message get answer: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, resp.Error
	}
	if resp.Message == nil {
		return nil, errors.New("jetstore: message get answer without a message")
	}
	out := &jetstream.RawStreamMsg{Subject: resp.Message.Subject, Sequence: resp.Message.Seq, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if out.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("jetstore: message get answer: %w", err)
		}
	}
	return out, nil
}

// lastMsg reads the last message of subject in r's stream (read).
func (s *Store) lastMsg(r *route, subject string, direct func(ctx context.Context) (*jetstream.RawStreamMsg, error)) (*jetstream.RawStreamMsg, error) {
	var m *jetstream.RawStreamMsg
	err := s.read(r, func(ctx context.Context) (err error) {
		m, err = s.leaderGet(ctx, r.stream, msgGetReq{LastFor: subject})
		return err
	}, func(ctx context.Context) (err error) {
		m, err = direct(ctx)
		return err
	})
	return m, err
}

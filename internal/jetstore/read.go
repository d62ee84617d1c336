package jetstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cryptoReader feeds ULID entropy.
type cryptoReader struct{}

func (cryptoReader) Read(p []byte) (int, error) { return rand.Read(p) }

// rec is one stored value: its subject, its stream sequence (what a
// compare-and-set expects) and its data; a tombstone counts as absent.
type rec struct {
	subj string
	seq  uint64
	data []byte
	ts   int64
	// batch is the append that wrote a head record (Tern-Batch).
	batch string
}

// get reads the value of subject from the stream leader (or, while it is
// away, a replica: route). A missing or cleared record is ErrNotFound
// with seq set to the tombstone's (0 when there is none), which is what a
// compare-and-set must expect.
func (s *Store) get(subject string) (rec, error) {
	m, err := s.lastMsg(&s.logRoute, subject, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.log.GetLastMsgForSubject(ctx, subject)
	})
	return recOf(subject, m, err)
}

// getLeader is get from the stream leader only, waiting through an
// election: whether a commit whose answer was lost is stored must not
// be decided by a replica that may not have applied it yet.
func (s *Store) getLeader(subject string) (rec, error) {
	var m *jetstream.RawStreamMsg
	err := s.do(func(ctx context.Context) (err error) {
		m, err = s.leaderGet(ctx, LogStream, msgGetReq{LastFor: subject})
		return err
	})
	return recOf(subject, m, err)
}

func recOf(subject string, m *jetstream.RawStreamMsg, err error) (rec, error) {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return rec{subj: subject}, ErrNotFound
	}
	if err != nil {
		return rec{}, fmt.Errorf("jetstore: get %s: %w", subject, err)
	}
	r := rec{subj: m.Subject, seq: m.Sequence, data: m.Data}
	if m.Header != nil {
		r.batch = m.Header.Get(hdrBatch)
		if m.Header.Get(hdrDel) != "" {
			return r, ErrNotFound
		}
		r.ts, _ = strconv.ParseInt(m.Header.Get(hdrTS), 10, 64) // absent: 0
	}
	return r, nil
}

// getMsg reads the raw message of subject (headers included).
func (s *Store) getMsg(subject string) (*jetstream.RawStreamMsg, error) {
	m, err := s.lastMsg(&s.logRoute, subject, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.log.GetLastMsgForSubject(ctx, subject)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("jetstore: get %s: %w", subject, err)
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	return m, nil
}

// getU64 reads a decimal counter record (0 when absent) and its seq.
func (s *Store) getU64(subject string) (uint64, uint64, error) {
	r, err := s.get(subject)
	if errors.Is(err, ErrNotFound) {
		return 0, r.seq, nil
	}
	if err != nil {
		return 0, 0, err
	}
	n, err := strconv.ParseUint(strings.Fields(string(r.data) + " 0")[0], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("jetstore: counter %s: %w", subject, err)
	}
	return n, r.seq, nil
}

// scan calls fn for every live record whose subject matches filter, in
// stream order, from the stream leader (route).
func (s *Store) scan(filter string, fn func(r rec) error) error {
	return s.scanFrom(filter, 1, fn)
}

// errStop ends a scan early without an error.
var errStop = errors.New("jetstore: stop scanning")

// scanFrom is scan from stream sequence start; fn returning errStop ends
// it without an error.
func (s *Store) scanFrom(filter string, start uint64, fn func(r rec) error) error {
	next := max(start, 1)
	for {
		var m *jetstream.RawStreamMsg
		err := s.read(&s.logRoute, func(ctx context.Context) (err error) {
			m, err = s.leaderGet(ctx, LogStream, msgGetReq{Seq: next, NextFor: filter})
			return err
		}, func(ctx context.Context) (err error) {
			m, err = s.log.GetMsg(ctx, next, jetstream.WithGetMsgSubject(filter))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("jetstore: scan %s: %w", filter, err)
		}
		next = m.Sequence + 1
		if m.Header != nil && m.Header.Get(hdrDel) != "" {
			continue
		}
		r := rec{subj: m.Subject, seq: m.Sequence, data: m.Data}
		if m.Header != nil {
			r.ts, _ = strconv.ParseInt(m.Header.Get(hdrTS), 10, 64)
		}
		if err := fn(r); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
}

// names lists the decoded last tokens of the live records under filter,
// sorted.
func (s *Store) names(filter string) ([]string, error) {
	var out []string
	err := s.scan(filter, func(r rec) error {
		n, err := lastToken(r.subj)
		if err != nil {
			return err
		}
		out = append(out, n)
		return nil
	})
	sortStrings(out)
	return out, err
}

// jetstreamMsg builds a tombstone message.
type jetstreamMsg struct{ subject string }

func (m *jetstreamMsg) nats() *nats.Msg {
	nm := nats.NewMsg(m.subject)
	nm.Header.Set(hdrDel, "1")
	return nm
}

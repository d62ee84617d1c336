package jetstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-im/tern/internal/im"
)

// The connection registry (im.Connections) is the bucket tern-conns: one
// key per user (tok(uid)) whose value is the JSON list of its devices'
// current connections, each with its node and generation. One key per
// user makes a user's count one read; every change is a compare-and-set
// of that key, so two nodes changing one user's devices never lose each
// other's change.

var _ im.Connections = (*Store)(nil)

// isConflict reports a compare-and-set that lost: the key changed (or
// was created) since it was read.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// kvSwap reads key, lets change compute its new value from the old one
// (nil when absent) and writes it only if the key is still as read,
// rereading and retrying when another writer came first. change returns
// ok false to write nothing; a nil new value deletes the key.
func (s *Store) kvSwap(bucket, key string, change func(old []byte) (v []byte, ok bool, err error)) error {
	kv := s.kv[bucket]
	var last error
	for attempt := range maxAttempts {
		if attempt > 0 && !s.backoff(attempt) {
			return ErrClosed
		}
		var rev uint64
		var old []byte
		err := s.do(func(ctx context.Context) error {
			e, err := kv.Get(ctx, key)
			rev, old = 0, nil
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				return nil
			case err != nil:
				return err
			}
			rev, old = e.Revision(), e.Value()
			return nil
		})
		if err != nil {
			return fmt.Errorf("jetstore: %s %s: %w", bucket, key, err)
		}
		v, ok, err := change(old)
		if err != nil || !ok {
			return err
		}
		err = s.do(func(ctx context.Context) error {
			var err error
			switch {
			case v == nil && rev == 0:
			case v == nil:
				err = kv.Delete(ctx, key, jetstream.LastRevision(rev))
			case rev == 0:
				_, err = kv.Create(ctx, key, v)
			default:
				_, err = kv.Update(ctx, key, v, rev)
			}
			return err
		})
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("jetstore: %s %s: %w", bucket, key, err)
		}
		last = err
	}
	return fmt.Errorf("jetstore: %s %s: %w (%w)", bucket, key, ErrContention, last)
}

func decodeConns(b []byte) ([]im.Conn, error) {
	if b == nil {
		return nil, nil
	}
	var cs []im.Conn
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("jetstore: bad connections record: %w", err)
	}
	return cs, nil
}

func encodeConns(cs []im.Conn) ([]byte, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	return json.Marshal(cs)
}

// Connect records c as the current connection of its device.
func (s *Store) Connect(c im.Conn) error {
	return s.kvSwap(bucketConns, tok(c.UID), func(old []byte) ([]byte, bool, error) {
		cs, err := decodeConns(old)
		if err != nil {
			return nil, false, err
		}
		i := slices.IndexFunc(cs, func(o im.Conn) bool { return o.DID == c.DID })
		if i >= 0 && cs[i] == c {
			return nil, false, nil
		}
		if i >= 0 {
			cs[i] = c
		} else {
			cs = append(cs, c)
		}
		v, err := encodeConns(cs)
		return v, err == nil, err
	})
}

// Disconnect removes c if it is still its device's current connection.
func (s *Store) Disconnect(c im.Conn) error {
	return s.kvSwap(bucketConns, tok(c.UID), func(old []byte) ([]byte, bool, error) {
		cs, err := decodeConns(old)
		if err != nil {
			return nil, false, err
		}
		i := slices.Index(cs, c)
		if i < 0 {
			return nil, false, nil
		}
		v, err := encodeConns(slices.Delete(cs, i, i+1))
		return v, err == nil, err
	})
}

// Conns lists uid's current connections.
func (s *Store) Conns(uid string) ([]im.Conn, error) {
	e, err := s.kvGet(bucketConns, tok(uid))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeConns(e.Value())
}

// scanConns lists the keys of the users with a connection gone selects,
// giving up after wait.
func (s *Store) scanConns(gone func(c im.Conn) bool, wait time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w, err := s.kv[bucketConns].WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }() // ends the watch's consumer; nothing to report
	// A node shutting down does not finish a long scan.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var keys []string
	for {
		select {
		case <-tick.C:
			if s.closing.Load() {
				return nil, ErrClosed
			}
		case e := <-w.Updates():
			if e == nil { // every current value was delivered
				return keys, nil
			}
			cs, err := decodeConns(e.Value())
			if err != nil {
				s.lg.Warn("jetstore: skipping a bad connections record", "key", e.Key(), "error", err)
				continue
			}
			if slices.ContainsFunc(cs, gone) {
				keys = append(keys, e.Key())
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stop:
			return nil, ErrClosed
		}
	}
}

// Drop removes every connection gone selects and returns those this
// call removed. It reads the whole bucket once (a node dies rarely).
func (s *Store) Drop(gone func(c im.Conn) bool) ([]im.Conn, error) {
	if s.closing.Load() {
		return nil, ErrClosed
	}
	// A scan is a KV watch (an ordered consumer): one that a leader
	// election stalls is abandoned and started again, with more time,
	// until the failover time has passed.
	var keys []string
	var err error
	deadline := time.Now().Add(s.opts.Failover)
	for wait := 5 * time.Second; ; wait = min(2*wait, time.Minute) {
		keys, err = s.scanConns(gone, wait)
		if err == nil || errors.Is(err, ErrClosed) || time.Now().After(deadline) {
			break
		}
		s.lg.Debug("jetstore: scan of connections retried", "error", err)
		select {
		case <-time.After(200 * time.Millisecond):
		case <-s.stop:
			return nil, ErrClosed
		}
	}
	if err != nil {
		return nil, fmt.Errorf("jetstore: scan connections: %w", err)
	}
	var out []im.Conn
	for _, k := range keys {
		var dropped []im.Conn
		err := s.kvSwap(bucketConns, k, func(old []byte) ([]byte, bool, error) {
			dropped = dropped[:0]
			cs, err := decodeConns(old)
			if err != nil {
				return nil, false, err
			}
			keep := cs[:0:0]
			for _, c := range cs {
				if gone(c) {
					dropped = append(dropped, c)
				} else {
					keep = append(keep, c)
				}
			}
			if len(dropped) == 0 {
				return nil, false, nil
			}
			v, err := encodeConns(keep)
			return v, err == nil, err
		})
		if err != nil {
			return out, err
		}
		out = append(out, dropped...)
	}
	return out, nil
}

package jetstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-im/tern/internal/im"
)

// Every node mirrors two records of the shared store into its own
// retained messages: each user's presence (im/p/{uid}) and the cluster's
// server record (im/sys/server). A KV watch delivers every stored value
// first, then each change as it is written, in write order.

// watch calls fn with every value of the keys of bucket matching filter,
// then with every change, until stop; done is closed once the stored
// values have been delivered (or the first pass failed). fn runs on one
// goroutine.
func (s *Store) watch(bucket, filter string, fn func(e jetstream.KeyValueEntry, initial bool)) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	var w jetstream.KeyWatcher
	err = s.do(func(actx context.Context) (err error) {
		// The watcher lives on ctx; actx bounds only its creation.
		w, err = s.kv[bucket].Watch(ctx, filter, jetstream.IgnoreDeletes())
		return err
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jetstore: watch %s: %w", bucket, err)
	}
	first := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		initial := true
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if initial {
						initial = false
						close(first)
					}
					continue
				}
				fn(e, initial)
			case <-ctx.Done():
				return
			}
		}
	}()
	stop = func() {
		cancel()
		if err := w.Stop(); err != nil && !errors.Is(err, context.Canceled) {
			s.lg.Debug("jetstore: stop watch", "bucket", bucket, "error", err)
		}
		<-done
	}
	select {
	case <-first:
		return stop, nil
	case <-done:
		stop()
		return nil, fmt.Errorf("jetstore: watch %s ended before its first pass", bucket)
	case <-time.After(time.Minute):
		stop()
		return nil, fmt.Errorf("jetstore: watch %s: first pass not done after a minute", bucket)
	}
}

// WatchPresence calls fn with every stored presence, initial true, and
// returns once they are all delivered; then it calls fn with each
// presence written by any node, in write order, until stop. fn runs on
// one goroutine.
func (s *Store) WatchPresence(fn func(uid string, p im.Presence, initial bool)) (stop func(), err error) {
	return s.watch(bucketPresence, ">", func(e jetstream.KeyValueEntry, initial bool) {
		uid, err := untok(e.Key())
		var p im.Presence
		if err == nil {
			err = json.Unmarshal(e.Value(), &p)
		}
		if err != nil {
			s.lg.Warn("jetstore: skipping a bad presence record", "key", e.Key(), "error", err)
			return
		}
		fn(uid, p, initial)
	})
}

// ServerInfo is the cluster's im/sys/server record (PROTOCOL §3): the
// epoch of the latest node start, that node's version and start time.
type ServerInfo struct {
	Epoch uint64 `json:"epoch"`
	V     string `json:"v"`
	TS    int64  `json:"ts"`
}

// serverKey is the server record's key in tern-meta.
const serverKey = "server"

// AnnounceServer stores si as the cluster's server record unless the
// stored one has an epoch as large (a node that started later).
func (s *Store) AnnounceServer(si ServerInfo) error {
	v, err := json.Marshal(si)
	if err != nil {
		return err
	}
	return s.kvSwap(bucketMeta, serverKey, func(old []byte) ([]byte, bool, error) {
		if old != nil {
			var cur ServerInfo
			if err := json.Unmarshal(old, &cur); err == nil && cur.Epoch >= si.Epoch {
				return nil, false, nil
			}
		}
		return v, true, nil
	})
}

// WatchServer calls fn with the stored server record and then with each
// newer one, until stop. It returns once the stored one (if any) was
// delivered.
func (s *Store) WatchServer(fn func(si ServerInfo)) (stop func(), err error) {
	return s.watch(bucketMeta, serverKey, func(e jetstream.KeyValueEntry, _ bool) {
		var si ServerInfo
		if err := json.Unmarshal(e.Value(), &si); err != nil {
			s.lg.Warn("jetstore: skipping a bad server record", "error", err)
			return
		}
		fn(si)
	})
}

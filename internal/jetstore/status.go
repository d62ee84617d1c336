package jetstore

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamStatus is one JetStream asset of the store as its leader sees it.
type StreamStatus struct {
	Name     string    `json:"name"`
	Leader   string    `json:"leader"` // empty while electing, or on a lone server
	Replicas []Replica `json:"replicas"`
	Msgs     uint64    `json:"msgs"`
	Bytes    uint64    `json:"bytes"`
}

// Replica is one follower of a stream.
type Replica struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	// Lag is how many operations the replica is behind the leader.
	Lag uint64 `json:"lag"`
	// ActiveMS is how long ago the leader last heard from it.
	ActiveMS int64 `json:"active_ms"`
}

// Status reports the log stream and every bucket: leader, replicas with
// their lag, messages and bytes.
func (s *Store) Status() ([]StreamStatus, error) {
	names := Assets()
	// The file assets exist once OpenFiles ran (the broker does).
	fileAssets := map[string]bool{"KV_" + FilesBucket: true, UploadStream: true, "OBJ_" + BlobBucket: true}
	var out []StreamStatus
	for _, n := range names {
		var info *jetstream.StreamInfo
		err := s.do(func(ctx context.Context) error {
			st, err := s.js.Stream(ctx, n)
			if err != nil {
				return err
			}
			info = st.CachedInfo()
			return nil
		})
		if errors.Is(err, jetstream.ErrStreamNotFound) && fileAssets[n] {
			continue
		}
		if err != nil {
			return nil, err
		}
		ss := StreamStatus{Name: n, Msgs: info.State.Msgs, Bytes: info.State.Bytes}
		if c := info.Cluster; c != nil {
			ss.Leader = c.Leader
			for _, r := range c.Replicas {
				ss.Replicas = append(ss.Replicas, Replica{
					Name: r.Name, Current: r.Current, Offline: r.Offline, Lag: r.Lag,
					ActiveMS: r.Active.Round(time.Millisecond).Milliseconds(),
				})
			}
			slices.SortFunc(ss.Replicas, func(a, b Replica) int {
				if a.Name < b.Name {
					return -1
				}
				if a.Name > b.Name {
					return 1
				}
				return 0
			})
		}
		out = append(out, ss)
	}
	return out, nil
}

package jetstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Trim removes events, their id index entries and stream entries older
// than cutoff (by event ts), raising each trimmed user's stream floor
// first, so a reader gets ErrTrimmed rather than a silent hole. Heads
// stay: positions are never reused. It scans the whole log (retention is
// off by default; docs/cluster.md), and is idempotent, so every node may
// run it.
func (s *Store) Trim(cutoff time.Time) (int, error) {
	c := cutoff.UnixMilli()
	floors := map[string]uint64{}
	var dead []uint64
	err := s.scan("tern.us.>", func(r rec) error {
		if r.ts == 0 || r.ts >= c {
			return nil
		}
		f := strings.Split(r.subj, ".") // tern.us.<p>.<uid>.<us>
		if len(f) != 5 {
			return nil
		}
		uid, err := untok(f[3])
		if err != nil {
			return err
		}
		us, err := strconv.ParseUint(f[4], 10, 64)
		if err != nil {
			return fmt.Errorf("jetstore: pointer %s: %w", r.subj, err)
		}
		floors[uid] = max(floors[uid], us+1)
		dead = append(dead, r.seq)
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, filter := range []string{"tern.ev.>", "tern.ax.>", "tern.id.>"} {
		if err := s.scan(filter, func(r rec) error {
			if r.ts != 0 && r.ts < c {
				dead = append(dead, r.seq)
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	for uid, f := range floors {
		cur, _, err := s.getU64(floorSubj(uid))
		if err != nil {
			return 0, err
		}
		if f > cur {
			if err := s.putRecord(floorSubj(uid), []byte(strconv.FormatUint(f, 10))); err != nil {
				return 0, err
			}
		}
	}
	for _, seq := range dead {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		err := s.log.DeleteMsg(ctx, seq)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, fmt.Errorf("jetstore: trim: %w", err)
		}
	}
	return len(dead), nil
}

package jetstore

import (
	"errors"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

var _ im.Feed = (*Store)(nil)

// After implements im.Feed over the id index (tern.id.>), read in stream
// order, which is commit order: from the index entry of after (or from
// the start when after is zero, trimmed or expired), skipping ids not
// above it. On one node ids increase with commit order; in a cluster,
// nodes stamp ids from their own clocks, so two nodes' events may be in
// commit order but not in id order (the search index is not built for
// clusters yet: docs/cluster.md).
func (s *Store) After(after ulid.ULID, max int) ([]im.Event, error) {
	start := uint64(1)
	if after != (ulid.ULID{}) {
		r, err := s.get(idSubj(after))
		switch {
		case err == nil:
			start = r.seq + 1
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	var out []im.Event
	err := s.scanFrom("tern.id.>", start, func(r rec) error {
		id, err := ulid.ParseStrict(r.subj[strings.LastIndexByte(r.subj, '.')+1:])
		if err != nil || id.Compare(after) <= 0 {
			return nil // not an id entry, or not after the position
		}
		ev, found, err := s.loadEvent(string(r.data))
		if err != nil {
			return err
		}
		if found {
			out = append(out, ev)
		}
		if len(out) >= max {
			return errStop
		}
		return nil
	})
	return out, err
}

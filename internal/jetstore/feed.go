package jetstore

import (
	"errors"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

var _ im.Feed = (*Store)(nil)

// After implements im.Feed over the id index (tern.id.>), read in stream
// order, which is commit order cluster-wide (one stream): from the index
// entry of after on. Nodes stamp ids from their own clocks, so in a
// cluster a later commit may carry a lower id than an earlier one: past
// after's entry nothing is skipped by id. Only when after's entry is gone
// (trimmed or expired) does the read start over and skip the ids not
// above after, which in a cluster may skip such a late, lower id.
func (s *Store) After(after ulid.ULID, max int) ([]im.Event, error) {
	start, floor := uint64(1), ulid.ULID{}
	if after != (ulid.ULID{}) {
		r, err := s.get(idSubj(after))
		switch {
		case err == nil:
			start = r.seq + 1
		case errors.Is(err, ErrNotFound):
			floor = after
		default:
			return nil, err
		}
	}
	var out []im.Event
	err := s.scanFrom("tern.id.>", start, func(r rec) error {
		id, err := ulid.ParseStrict(r.subj[strings.LastIndexByte(r.subj, '.')+1:])
		if err != nil || id.Compare(floor) <= 0 {
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

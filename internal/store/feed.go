package store

import (
	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

var _ im.Feed = (*Store)(nil)

// After implements im.Feed over the event id table (0x13): ids are ULIDs
// handed out in increasing order by the single sequencer, whose commits
// are serial, so once an id is visible every smaller one committed
// before it is too, and a follower that remembers the last id it read
// misses nothing.
func (s *Store) After(after ulid.ULID, max int) ([]codec.Event, error) {
	var evs []codec.Event
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte{tabEventID}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(max, 256)})
		defer it.Close()
		start := append([]byte{tabEventID}, after[:]...)
		for it.Seek(start); it.Valid() && len(evs) < max; it.Next() {
			item := it.Item()
			if k := item.Key(); len(k) == 17 && ulid.ULID(k[1:]) == after {
				continue
			}
			p, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			ev, found, err := s.loadEvent(txn, p)
			if err != nil {
				return err
			}
			if found {
				evs = append(evs, ev)
			}
		}
		return nil
	})
	return evs, err
}

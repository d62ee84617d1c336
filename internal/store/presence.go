package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-im/tern/internal/im"
)

// tabPresence holds each user's last published presence: {uid} → the
// JSON of im.Presence, byte for byte the retained im/p/{uid} payload.
const tabPresence byte = 0x30

// Presence returns the stored presence of uid, or ErrNotFound if the user
// has never been seen.
func (s *Store) Presence(uid string) (im.Presence, error) {
	var p im.Presence
	err := s.db.View(func(txn *badger.Txn) error {
		return getJSON(txn, key(tabPresence, uid), &p)
	})
	return p, err
}

// Presences returns the stored presence of each of uids that has one;
// users never seen are absent from the map. It serves presence.get.
func (s *Store) Presences(uids []string) (map[string]im.Presence, error) {
	out := make(map[string]im.Presence, len(uids))
	err := s.db.View(func(txn *badger.Txn) error {
		for _, uid := range uids {
			var p im.Presence
			err := getJSON(txn, key(tabPresence, uid), &p)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out[uid] = p
		}
		return nil
	})
	return out, err
}

// PutPresence stores the presence of uid.
func (s *Store) PutPresence(uid string, p im.Presence) error {
	return s.db.Update(func(txn *badger.Txn) error {
		return putJSON(txn, key(tabPresence, uid), p)
	})
}

// PutPresences stores many presences in one batch.
func (s *Store) PutPresences(ps map[string]im.Presence) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for uid, p := range ps {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if err := wb.Set(key(tabPresence, uid), b); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// RangePresence calls fn with every stored presence, in uid order, until
// fn returns an error, which it returns.
func (s *Store) RangePresence(fn func(uid string, p im.Presence) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, []byte{tabPresence}, func(k, v []byte) error {
			var p im.Presence
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("store: decode presence %q: %w", k[1:], err)
			}
			return fn(string(k[1:]), p)
		})
	})
}

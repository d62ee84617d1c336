package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-im/tern/internal/codec"
)

// tabQuarantine holds records moved aside by Repair: the original key
// after the prefix, the original value (docs/storage.md). Nothing reads it.
const tabQuarantine byte = 0x2F

// maxWarned bounds the set of record keys already logged as unreadable;
// past it the set starts over (a key may then be logged again).
const maxWarned = 10_000

// badRecords counts the stored records that failed to decode on a read
// and remembers which were logged, so each is logged once.
type badRecords struct {
	n      atomic.Int64
	mu     sync.Mutex
	warned map[string]struct{}
}

// Unreadable returns how many times a read met a stored record that does
// not decode with the read limits and skipped it (metric
// tern_store_unreadable_records_total).
func (s *Store) Unreadable() int64 { return s.bad.n.Load() }

// decode decodes the stored event in item. A record that does not decode
// is skipped: ok is false, err nil, and it is counted and logged (warn,
// once per key). err is set only when the value could not be read at all.
func (s *Store) decode(item *badger.Item, ev *codec.Event) (ok bool, err error) {
	var derr error
	err = item.Value(func(v []byte) error {
		derr = codec.UnmarshalStored(v, ev)
		return nil
	})
	if err != nil {
		return false, err
	}
	if derr == nil {
		return true, nil
	}
	*ev = codec.Event{}
	s.bad.n.Add(1)
	k := string(item.Key())
	s.bad.mu.Lock()
	_, seen := s.bad.warned[k]
	if !seen {
		if s.bad.warned == nil || len(s.bad.warned) >= maxWarned {
			s.bad.warned = map[string]struct{}{}
		}
		s.bad.warned[k] = struct{}{}
	}
	s.bad.mu.Unlock()
	if !seen {
		s.log.Warn("unreadable stored event skipped; run tern store check",
			"key", RecordKey(item.Key()), "error", derr)
	}
	return false, nil
}

// RecordKey renders a stored event's key for people: the table, the
// conversation and the seq (or aux n), e.g. "event g:ops/17".
func RecordKey(k []byte) string {
	if len(k) >= 10 && (k[0] == tabEvent || k[0] == tabAux) && k[len(k)-9] == 0 {
		name := "event"
		if k[0] == tabAux {
			name = "aux"
		}
		return fmt.Sprintf("%s %s/%d", name, k[1:len(k)-9], binary.BigEndian.Uint64(k[len(k)-8:]))
	}
	return hex.EncodeToString(k)
}

// Problem is one stored record that cannot be read.
type Problem struct {
	Key    string // RecordKey of the record
	Reason string
	raw    []byte
}

// CheckResult is what Check found.
type CheckResult struct {
	Scanned     int
	Problems    []Problem
	Quarantined int
}

// checkChunk bounds the moves of one Repair transaction.
const checkChunk = 500

// Check scans every stored event record (conversation events and aux
// events) and reports those that do not decode with the read limits. With
// repair it moves them under the quarantine prefix (kept, not deleted),
// so reads no longer meet them. It is meant for a stopped broker's data
// dir (tern store check), but is safe on a live store.
func (s *Store) Check(repair bool) (CheckResult, error) {
	var r CheckResult
	for _, tab := range []byte{tabEvent, tabAux} {
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tab}, PrefetchValues: true, PrefetchSize: 64})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				r.Scanned++
				var ev codec.Event
				var derr error
				if err := it.Item().Value(func(v []byte) error {
					derr = codec.UnmarshalStored(v, &ev)
					return nil
				}); err != nil {
					return err
				}
				if derr != nil {
					k := it.Item().KeyCopy(nil)
					r.Problems = append(r.Problems, Problem{Key: RecordKey(k), Reason: derr.Error(), raw: k})
				}
			}
			return nil
		})
		if err != nil {
			return r, fmt.Errorf("store: check: %w", err)
		}
	}
	if !repair {
		return r, nil
	}
	for chunk := range slices.Chunk(r.Problems, checkChunk) {
		moved := 0
		err := s.db.Update(func(txn *badger.Txn) error {
			moved = 0
			for _, p := range chunk {
				item, err := txn.Get(p.raw)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue // trimmed or expired meanwhile
				}
				if err != nil {
					return err
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if err := txn.Set(append([]byte{tabQuarantine}, p.raw...), v); err != nil {
					return err
				}
				if err := txn.Delete(p.raw); err != nil {
					return err
				}
				moved++
			}
			return nil
		})
		if err != nil {
			return r, fmt.Errorf("store: quarantine: %w", err)
		}
		r.Quarantined += moved
	}
	return r, nil
}

// Quarantined lists the original keys of the quarantined records.
func (s *Store) Quarantined() ([]string, error) {
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tabQuarantine}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, RecordKey(bytes.TrimPrefix(it.Item().Key(), []byte{tabQuarantine})))
		}
		return nil
	})
	return out, err
}

// PutRawEvent overwrites the stored conversation event cv/seq with p,
// without any checks. It exists for tests that need a record in a shape
// older versions wrote; nothing in the broker calls it.
func (s *Store) PutRawEvent(cv string, seq uint64, p []byte) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(seqKey(tabEvent, cv, seq), p) })
}

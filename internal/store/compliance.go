package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// Compliance tables (docs/storage.md).
const (
	tabEdit    byte = 0x22 // {target ulid}{edit ulid} → pointer of the edit event
	tabConvRet byte = 0x23 // {cv} → retention in ms (uint64)
	tabHold    byte = 0x24 // {hold id} → im.Hold (JSON)
)

var _ im.Compliance = (*Store)(nil)

// holdCache keeps every hold in memory: they are few, and Held runs on
// each delete and for each old event the trimmer looks at.
type holdCache struct {
	mu     sync.RWMutex
	loaded bool
	holds  []im.Hold
}

func (s *Store) loadHolds() ([]im.Hold, error) {
	s.holdCache.mu.RLock()
	if s.holdCache.loaded {
		hs := s.holdCache.holds
		s.holdCache.mu.RUnlock()
		return hs, nil
	}
	s.holdCache.mu.RUnlock()
	s.holdCache.mu.Lock()
	defer s.holdCache.mu.Unlock()
	if s.holdCache.loaded {
		return s.holdCache.holds, nil
	}
	var hs []im.Hold
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tabHold}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var h im.Hold
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &h) }); err != nil {
				return err
			}
			hs = append(hs, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.holdCache.holds, s.holdCache.loaded = hs, true
	return hs, nil
}

// AddHold stores h with a new id (a ULID) and creation time.
func (s *Store) AddHold(h im.Hold) (im.Hold, error) {
	if err := s.writable(); err != nil {
		return h, err
	}
	h.ID = ulid.Make().String()
	h.Created = s.opts.Now().UnixMilli()
	v, err := json.Marshal(h)
	if err != nil {
		return h, err
	}
	s.holdCache.mu.Lock()
	defer s.holdCache.mu.Unlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key(tabHold, h.ID), v) }); err != nil {
		return h, err
	}
	s.holdCache.loaded = false // reloaded on next use
	return h, nil
}

// RemoveHold deletes hold id.
func (s *Store) RemoveHold(id string) (im.Hold, error) {
	var h im.Hold
	s.holdCache.mu.Lock()
	defer s.holdCache.mu.Unlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key(tabHold, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &h) }); err != nil {
			return err
		}
		return txn.Delete(key(tabHold, id))
	})
	if err == nil {
		s.holdCache.loaded = false
	}
	return h, err
}

// Holds lists every hold, oldest first.
func (s *Store) Holds() ([]im.Hold, error) {
	hs, err := s.loadHolds()
	return slices.Clone(hs), err
}

// Held reports whether a hold covers ev.
func (s *Store) Held(ev *im.Event) (bool, error) {
	hs, err := s.loadHolds()
	if err != nil {
		return false, err
	}
	return im.HeldBy(hs, ev), nil
}

// SetRetention sets cv's own retention (0 removes it: the server default
// applies).
func (s *Store) SetRetention(cv string, d time.Duration) error {
	return s.db.Update(func(txn *badger.Txn) error {
		if d <= 0 {
			return txn.Delete(key(tabConvRet, cv))
		}
		return txn.Set(key(tabConvRet, cv), u64(uint64(d.Milliseconds())))
	})
}

// Retention is cv's own retention, 0 when it follows the server default.
func (s *Store) Retention(cv string) (time.Duration, error) {
	var ms uint64
	err := s.db.View(func(txn *badger.Txn) (err error) {
		ms, err = getU64(txn, key(tabConvRet, cv))
		return err
	})
	return time.Duration(ms) * time.Millisecond, err
}

// purge marks the target of p and its edits Deleted and, unless p.Keep,
// clears their bodies: entries for the sequencer's transaction. An event
// that expired meanwhile is left alone.
func (q *sequencer) purge(txn *badger.Txn, p *im.Purge, now time.Time) ([]entry, error) {
	var out []entry
	p.Forgotten = p.Forgotten[:0]
	rewrite := func(ptrv []byte) error {
		kind, cv, n, err := parsePtr(ptrv)
		if err != nil || kind != ptrEvent {
			return err
		}
		k := seqKey(tabEvent, cv, n)
		item, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var ev codec.Event
		if err := item.Value(func(v []byte) error { return codec.UnmarshalStored(v, &ev) }); err != nil {
			return nil // unreadable: tern store check reports it
		}
		var ttl time.Duration
		if exp := item.ExpiresAt(); exp > 0 {
			if ttl = time.Unix(int64(exp), 0).Sub(now); ttl <= 0 {
				return nil
			}
		}
		p.Forgotten = append(p.Forgotten, im.Forgotten{CV: ev.CV, ID: ev.ID, Att: ev.Att, Deleted: true, Held: p.Keep})
		ev.Deleted = true
		if !p.Keep {
			ev.Tombstone()
		}
		v, err := codec.MarshalStored(&ev)
		if err != nil {
			return err
		}
		out = append(out, entry{k: k, v: v, ttl: ttl, size: int64(len(k) + len(v) + 32)})
		return nil
	}
	item, err := txn.Get(append([]byte{tabEventID}, p.ID[:]...))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pv, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	if err := rewrite(pv); err != nil {
		return nil, err
	}
	var edits [][]byte
	prefix := append([]byte{tabEdit}, p.ID[:]...)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			it.Close()
			return nil, err
		}
		edits = append(edits, v)
	}
	it.Close()
	for _, e := range edits {
		if err := rewrite(e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// editKey indexes edit id of message tgt.
func editKey(tgt, id ulid.ULID) []byte {
	k := make([]byte, 0, 33)
	k = append(k, tabEdit)
	k = append(k, tgt[:]...)
	return append(k, id[:]...)
}

// Export calls fn with every stored conversation event q selects, whole
// (bodies of held deleted messages included), conversation by
// conversation in seq order. It reads a page of events per transaction,
// so memory stays bounded however many events there are; fn must not
// keep the event.
func (s *Store) Export(q im.ExportQuery, fn func(*im.Event) error) error {
	type conv struct {
		cv     string
		window im.Window
	}
	var convs []conv
	switch {
	case q.UID != "":
		cvs, err := s.UserConvs(q.UID)
		if err != nil {
			return err
		}
		gs, err := s.userGroupsEver(q.UID)
		if err != nil {
			return err
		}
		for _, cv := range cvs {
			if !strings.HasPrefix(cv, "g:") {
				convs = append(convs, conv{cv: cv, window: im.Open})
			}
		}
		for gid, m := range gs {
			convs = append(convs, conv{cv: "g:" + gid, window: m.Window()})
		}
		slices.SortFunc(convs, func(a, b conv) int { return strings.Compare(a.cv, b.cv) })
	default:
		names, err := s.logNames(tabEvent)
		if err != nil {
			return err
		}
		for _, cv := range names {
			convs = append(convs, conv{cv: cv, window: im.Open})
		}
	}
	for _, c := range convs {
		if q.CV != "" && c.cv != q.CV {
			continue
		}
		if err := s.exportConv(c.cv, c.window, q, fn); err != nil {
			return err
		}
	}
	return nil
}

// exportPage is how many events one read transaction of Export reads.
const exportPage = 512

func (s *Store) exportConv(cv string, w im.Window, q im.ExportQuery, fn func(*im.Event) error) error {
	next := max(w.From, 1)
	for {
		var page []codec.Event
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: append(key(tabEvent, cv), 0), PrefetchValues: true, PrefetchSize: 64})
			defer it.Close()
			for it.Seek(seqKey(tabEvent, cv, next)); it.Valid() && len(page) < exportPage; it.Next() {
				k := it.Item().Key()
				seq := binary.BigEndian.Uint64(k[len(k)-8:])
				next = seq + 1
				if !w.Contains(seq) {
					if w.To != 0 && seq > w.To {
						next = 0
						return nil
					}
					continue
				}
				var ev codec.Event
				ok, err := s.decode(it.Item(), &ev)
				if err != nil {
					return err
				}
				if ok {
					page = append(page, ev)
				}
			}
			if !it.Valid() {
				next = 0
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range page {
			ev := &page[i]
			if (q.Since > 0 && ev.TS < q.Since) || (q.Until > 0 && ev.TS >= q.Until) {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
	}
}

// userGroupsEver lists the groups uid is or was a member of, with the
// membership record.
func (s *Store) userGroupsEver(uid string) (map[string]im.Member, error) {
	out := map[string]im.Member{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tabMember}, PrefetchValues: false})
		defer it.Close()
		suffix := "\x00" + uid
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key()[1:])
			if !strings.HasSuffix(k, suffix) {
				continue
			}
			var m im.Member
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
				return err
			}
			out[strings.TrimSuffix(k, suffix)] = m
		}
		return nil
	})
	return out, err
}

// logNames lists the names (conversations) of log table tab, in order:
// one seek per name.
func (s *Store) logNames(tab byte) ([]string, error) {
	var names []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tab}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); {
			k := it.Item().Key()
			if len(k) < 10 {
				it.Next()
				continue
			}
			name := string(k[1 : len(k)-9])
			names = append(names, name)
			it.Seek(append(key(tab, name), 1))
		}
		return nil
	})
	return names, err
}

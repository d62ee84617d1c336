package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// IM tables (0x10–0x2F; docs/storage.md). Every uint64 in a key is
// big-endian, so byte order is numeric order.
const (
	tabEvent    byte = 0x10 // {cv}\x00{seq} → stored event (CBOR)
	tabAux      byte = 0x11 // {cv}\x00{n} → aux event (marks; no seq)
	tabStream   byte = 0x12 // {uid}\x00{us} → pointer
	tabEventID  byte = 0x13 // {ulid 16 bytes} → pointer
	tabDedupe   byte = 0x14 // {uid}\x00{did}\x00{cmid} → pointer, TTL DedupeTTL
	tabConvSeq  byte = 0x15 // {cv} → last seq
	tabUserUS   byte = 0x16 // {uid} → last us
	tabAuxSeq   byte = 0x17 // {cv} → last aux n
	tabMarker   byte = 0x18 // {cv}\x00{uid}\x00{k} → upto
	tabGroup    byte = 0x19 // {gid} → Group (JSON)
	tabMember   byte = 0x1A // {gid}\x00{uid} → MemberRec (JSON)
	tabUserConv byte = 0x1B // {uid}\x00{cv} → empty
	tabContact  byte = 0x1C // {uid}\x00{other} → empty
	tabBlock    byte = 0x1D // {uid}\x00{other} → empty: uid blocks other
	tabBlockedB byte = 0x1E // {other}\x00{uid} → empty: reverse of tabBlock
	tabReact    byte = 0x1F // {ulid}{uid}\x00{k} → empty
)

// Pointer kinds: where a stream entry's event lives.
const (
	ptrEvent byte = 0 // conversation log, by seq
	ptrAux   byte = 1 // aux log, by n
)

// ErrTooBig: one append does not fit one Badger transaction.
var ErrTooBig = im.ErrTooBig

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func seqKey(tab byte, s string, n uint64) []byte {
	k := make([]byte, 0, 2+len(s)+8)
	k = append(k, tab)
	k = append(k, s...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, n)
}

func ptr(kind byte, cv string, n uint64) []byte {
	p := make([]byte, 0, 9+len(cv))
	p = append(p, kind)
	p = binary.BigEndian.AppendUint64(p, n)
	return append(p, cv...)
}

func parsePtr(p []byte) (kind byte, cv string, n uint64, err error) {
	if len(p) < 10 {
		return 0, "", 0, fmt.Errorf("store: pointer is %d bytes", len(p))
	}
	return p[0], string(p[9:]), binary.BigEndian.Uint64(p[1:9]), nil
}

func getU64(txn *badger.Txn, k []byte) (uint64, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("store: counter %x is %d bytes", k, len(v))
		}
		n = binary.BigEndian.Uint64(v)
		return nil
	})
	return n, err
}

// loadEvent resolves a pointer to its event; found is false when the
// event has expired, never existed or cannot be decoded (then it is
// counted and logged by s.unreadable).
func (s *Store) loadEvent(txn *badger.Txn, p []byte) (ev codec.Event, found bool, err error) {
	kind, cv, n, err := parsePtr(p)
	if err != nil {
		return ev, false, err
	}
	tab := tabEvent
	if kind == ptrAux {
		tab = tabAux
	}
	item, err := txn.Get(seqKey(tab, cv, n))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ev, false, nil
	}
	if err != nil {
		return ev, false, err
	}
	ok, err := s.decode(item, &ev)
	return ev, ok, err
}

// USHead returns the last us of uid's stream (0 when empty). It is as
// fresh as a read transaction: every committed append is in it.
func (s *Store) USHead(uid string) (uint64, error) {
	n, ok, gen := s.heads.get(uid)
	if ok {
		return n, nil
	}
	err := s.db.View(func(txn *badger.Txn) (err error) {
		n, err = getU64(txn, key(tabUserUS, uid))
		return err
	})
	if err == nil {
		s.heads.fill(uid, n, gen)
	}
	return n, err
}

// ConvSeq returns the last seq of conversation cv (0 when empty).
func (s *Store) ConvSeq(cv string) (uint64, error) {
	var n uint64
	err := s.db.View(func(txn *badger.Txn) (err error) {
		n, err = getU64(txn, key(tabConvSeq, cv))
		return err
	})
	return n, err
}

// Stream reads up to max events of uid's stream with us > since, in
// order, each with its US set. more reports whether the stream goes on.
// Events that have expired (disappearing messages) are skipped. It
// returns ErrTrimmed when events after since have been trimmed by age
// (since+1 is below the stream floor): the caller must start over.
func (s *Store) Stream(uid string, since uint64, max int) (evs []codec.Event, more bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		floor, err := getU64(txn, key(tabFloor, uid))
		if err != nil {
			return err
		}
		if since+1 < floor {
			return ErrTrimmed
		}
		prefix := append(key(tabStream, uid), 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(max+1, 256)})
		defer it.Close()
		for it.Seek(seqKey(tabStream, uid, since+1)); it.Valid(); it.Next() {
			if len(evs) >= max {
				more = true
				return nil
			}
			item := it.Item()
			k := item.Key()
			us := binary.BigEndian.Uint64(k[len(k)-8:])
			var p []byte
			if p, err = item.ValueCopy(nil); err != nil {
				return err
			}
			ev, found, err := s.loadEvent(txn, p)
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			ev.US = us
			ev.Tombstone()
			evs = append(evs, ev)
		}
		return nil
	})
	return evs, more, err
}

// History reads a page of up to q.Max events of q.CV within q.Window:
// with q.After > 0 the first events after it, else the last events before
// q.Before (0 = the newest). Items are in ascending seq order; complete
// reports that nothing more lies in the direction read.
func (s *Store) History(q im.HistoryQuery) (items []codec.Event, complete bool, err error) {
	cv, lo, hi, before, after, max := q.CV, q.Window.From, q.Window.To, q.Before, q.After, q.Max
	if hi == 0 {
		hi = ^uint64(0)
	}
	err = s.db.View(func(txn *badger.Txn) error {
		prefix := append(key(tabEvent, cv), 0)
		forward := after > 0
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(max+1, 256), Reverse: !forward})
		defer it.Close()
		var start uint64
		switch {
		case forward:
			start = max64(after+1, lo)
		case before > 0:
			start = min(before-1, hi)
		default:
			start = hi
		}
		complete = true
		for it.Seek(seqKey(tabEvent, cv, start)); it.Valid(); it.Next() {
			k := it.Item().Key()
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			if seq < lo || seq > hi {
				break
			}
			if len(items) >= max {
				complete = false
				break
			}
			var ev codec.Event
			ok, err := s.decode(it.Item(), &ev)
			if err != nil {
				return err
			}
			if !ok {
				continue // unreadable: skipped, counted and logged
			}
			ev.Tombstone()
			items = append(items, ev)
		}
		if !forward {
			for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
				items[i], items[j] = items[j], items[i]
			}
		}
		return nil
	})
	return items, complete, err
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// EventByID returns the conversation event with id.
func (s *Store) EventByID(id ulid.ULID) (codec.Event, error) {
	var ev codec.Event
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append([]byte{tabEventID}, id[:]...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		p, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		var found bool
		if ev, found, err = s.loadEvent(txn, p); err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		ev.Tombstone()
		return nil
	})
	return ev, err
}

// Deduped returns the event an earlier upstream command of (uid, did)
// with cmid produced, ErrNotFound for a new command, or ErrGone when the
// command was done but its event has since been trimmed or expired.
func (s *Store) Deduped(uid, did, cmid string) (codec.Event, error) {
	var ev codec.Event
	err := s.db.View(func(txn *badger.Txn) (err error) {
		ev, err = s.dedupeLookup(txn, uid, did, cmid)
		return err
	})
	return ev, err
}

func (s *Store) dedupeLookup(txn *badger.Txn, uid, did, cmid string) (codec.Event, error) {
	item, err := txn.Get(key(tabDedupe, uid, did, cmid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return codec.Event{}, ErrNotFound
	}
	if err != nil {
		return codec.Event{}, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return codec.Event{}, err
	}
	us, p := parseDedupe(v)
	ev, found, err := s.loadEvent(txn, p)
	if err != nil {
		return ev, err
	}
	if !found {
		return ev, ErrGone
	}
	ev.US = us
	ev.Tombstone()
	return ev, nil
}

// dedupeWithUS marks a dedupe value that carries the sender's us before
// the pointer. A bare pointer (older entries, or a sender outside the
// recipients) starts with its kind, 0 or 1.
const dedupeWithUS byte = 0x80

// dedupeValue is the value of a dedupe entry: the pointer, preceded by
// the us the event got in the sender's stream when there is one.
func dedupeValue(us uint64, p []byte) []byte {
	if us == 0 {
		return p
	}
	v := make([]byte, 0, 9+len(p))
	v = append(v, dedupeWithUS)
	v = binary.BigEndian.AppendUint64(v, us)
	return append(v, p...)
}

// parseDedupe splits a dedupe value into the sender's us (0 if absent)
// and the pointer.
func parseDedupe(v []byte) (uint64, []byte) {
	if len(v) > 9 && v[0] == dedupeWithUS {
		return binary.BigEndian.Uint64(v[1:9]), v[9:]
	}
	return 0, v
}

// Marker returns uid's marker of kind k ("read" or "dlv") in cv.
func (s *Store) Marker(cv, uid, k string) (uint64, error) {
	var n uint64
	err := s.db.View(func(txn *badger.Txn) (err error) {
		n, err = getU64(txn, key(tabMarker, cv, uid, k))
		return err
	})
	return n, err
}

// Group returns a group's record.
func (s *Store) Group(gid string) (im.Group, error) {
	var g im.Group
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, key(tabGroup, gid), &g) })
	return g, err
}

// Member returns uid's membership record of gid (ErrNotFound if it never
// was a member).
func (s *Store) Member(gid, uid string) (im.Member, error) {
	var m im.Member
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, key(tabMember, gid, uid), &m) })
	return m, err
}

// Members returns the current members of gid with their records, in uid
// order.
func (s *Store) Members(gid string) (map[string]im.Member, []string, error) {
	recs := map[string]im.Member{}
	var order []string
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := append(key(tabMember, gid), 0)
		return scanJSON(txn, prefix, func(k, v []byte) error {
			var m im.Member
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			if m.Current() {
				uid := string(k[len(prefix):])
				recs[uid] = m
				order = append(order, uid)
			}
			return nil
		})
	})
	return recs, order, err
}

// UserConvs lists the conversations on uid's conversation list.
func (s *Store) UserConvs(uid string) ([]string, error) {
	return s.keysUnder(append(key(tabUserConv, uid), 0))
}

// Contacts lists uid's roster.
func (s *Store) Contacts(uid string) ([]string, error) {
	return s.keysUnder(append(key(tabContact, uid), 0))
}

// Blocked lists the users uid blocks.
func (s *Store) Blocked(uid string) ([]string, error) {
	return s.keysUnder(append(key(tabBlock, uid), 0))
}

// BlockedBy lists the users who block uid.
func (s *Store) BlockedBy(uid string) ([]string, error) {
	return s.keysUnder(append(key(tabBlockedB, uid), 0))
}

// Groups lists the groups uid is a current member of.
func (s *Store) Groups(uid string) ([]string, error) {
	cvs, err := s.UserConvs(uid)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, cv := range cvs {
		if gid, ok := strings.CutPrefix(cv, "g:"); ok {
			out = append(out, gid)
		}
	}
	return out, nil
}

func (s *Store) keysUnder(prefix []byte) ([]string, error) {
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, string(it.Item().Key()[len(prefix):]))
		}
		return nil
	})
	return out, err
}

// Blocks reports whether a blocks b.
func (s *Store) Blocks(a, b string) (bool, error) {
	return s.exists(key(tabBlock, a, b))
}

// DMPeer answers, in one read, what a direct message from uid to other
// needs: whether other is a user, and whether either blocks the other.
func (s *Store) DMPeer(uid, other string) (exists, blocked bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		for _, k := range [][]byte{key(tabUser, other), key(tabBlock, uid, other), key(tabBlock, other, uid)} {
			_, err := txn.Get(k)
			switch {
			case err == nil:
				if k[0] == tabUser {
					exists = true
				} else {
					blocked = true
				}
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}
		}
		return nil
	})
	return exists, blocked, err
}

// UserExists reports whether uid is an account (im.Directory).
func (s *Store) UserExists(uid string) (bool, error) {
	return s.exists(key(tabUser, uid))
}

// IsContact reports whether other is on uid's roster.
func (s *Store) IsContact(uid, other string) (bool, error) {
	return s.exists(key(tabContact, uid, other))
}

// Reacted reports whether uid has reaction k on message id.
func (s *Store) Reacted(id ulid.ULID, uid, k string) (bool, error) {
	return s.exists(reactKey(id, uid, k))
}

func reactKey(id ulid.ULID, uid, k string) []byte {
	b := append([]byte{tabReact}, id[:]...)
	b = append(b, uid...)
	b = append(b, 0)
	return append(b, k...)
}

func (s *Store) exists(k []byte) (bool, error) {
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(k)
		switch {
		case err == nil:
			ok = true
		case errors.Is(err, badger.ErrKeyNotFound):
		default:
			return err
		}
		return nil
	})
	return ok, err
}

// SetContact adds (on) or removes other on uid's roster.
func (s *Store) SetContact(uid, other string, on bool) error {
	return s.setFlag(on, key(tabContact, uid, other))
}

// SetBlock makes uid block (on) or unblock other.
func (s *Store) SetBlock(uid, other string, on bool) error {
	return s.setFlag(on, key(tabBlock, uid, other), key(tabBlockedB, other, uid))
}

func (s *Store) setFlag(on bool, keys ...[]byte) error {
	if on { // removing a flag stores nothing
		if err := s.writable(); err != nil {
			return err
		}
	}
	return s.db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			var err error
			if on {
				err = txn.Set(k, nil)
			} else {
				err = txn.Delete(k)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// AllGroups calls fn for every group record, in gid order.
func (s *Store) AllGroups(fn func(im.Group) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, []byte{tabGroup}, func(_, v []byte) error {
			var g im.Group
			if err := json.Unmarshal(v, &g); err != nil {
				return err
			}
			return fn(g)
		})
	})
}

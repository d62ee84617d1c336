package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/im"
)

// tabDMFloor is {cv}\x00{uid} → the last seq of DM cv when an account uid
// was deleted: a later account with the same uid reads only seqs after it
// (docs/storage.md, "Deleting a user").
const tabDMFloor byte = 0x21

// tabDeleting is {uid} → empty while the account uid is being deleted:
// DeleteUser removes the user record and sets it in one transaction, and
// clears it once everything else is purged, so a deletion cut short (a
// crash, a full disk) is finished by running it again, and no new account
// can take the uid before that (PutUser refuses it).
const tabDeleting byte = 0x05

// purgeChunk bounds the deletes of one purge transaction.
const purgeChunk = 1000

// DeleteUser deletes an account and everything that tied the uid to it,
// so a later account with the same uid starts empty (docs/storage.md):
//  1. the user record and every device token;
//  2. each group membership ends with a `member` event op "leave" to the
//     other members (an owner's group passes to its first admin, else its
//     first member, with a `role` event), and the membership record is
//     dropped, so the uid was never a member;
//  3. each DM gets a `member` event op "leave" to the other user, and a
//     floor at its seq: a later account with the uid reads only later seqs;
//  4. the stream (its floor is raised past the head, so `sync` answers
//     reset), dedupe entries, markers and the conversation list;
//  5. contacts and blocks both ways.
//
// The us counter and the conversations themselves stay: us and seq are
// never reused, and the other members keep their history.
func (s *Store) DeleteUser(uid string) (accounts.Purged, error) {
	var p accounts.Purged
	err := s.db.Update(func(txn *badger.Txn) error {
		k := key(tabUser, uid)
		if _, err := txn.Get(k); err != nil {
			if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			// No account: resume a deletion that stopped half way, or
			// there is nothing to delete.
			if _, err := txn.Get(key(tabDeleting, uid)); err != nil {
				if errors.Is(err, badger.ErrKeyNotFound) {
					return ErrNotFound
				}
				return err
			}
			return nil
		}
		if _, err := deleteTokens(txn, uid, "", ""); err != nil {
			return err
		}
		if err := txn.Set(key(tabDeleting, uid), nil); err != nil {
			return err
		}
		return txn.Delete(k)
	})
	if err != nil {
		return p, err
	}
	p, err = s.purgeUser(uid)
	if err != nil {
		return p, fmt.Errorf("%w (run the deletion again to finish it)", err)
	}
	return p, s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key(tabDeleting, uid)) })
}

// purgeUser is steps 2 to 5 of DeleteUser. Every step can run again: a
// deletion that stopped half way is finished by the next DeleteUser.
func (s *Store) purgeUser(uid string) (accounts.Purged, error) {
	var p accounts.Purged
	cvs, err := s.UserConvs(uid)
	if err != nil {
		return p, err
	}
	var dead [][]byte // keys to delete once the events are appended
	for _, cv := range cvs {
		for _, k := range []string{"read", "dlv"} {
			dead = append(dead, key(tabMarker, cv, uid, k))
		}
		if gid, ok := strings.CutPrefix(cv, "g:"); ok {
			others, left, err := s.leaveGroup(gid, uid)
			if err != nil {
				return p, fmt.Errorf("store: delete %s: leave group %s: %w", uid, gid, err)
			}
			if left {
				p.Groups = append(p.Groups, gid)
				p.Users = append(p.Users, others...)
			}
			dead = append(dead, key(tabMember, gid, uid))
			continue
		}
		if err := s.leaveDM(cv, uid); err != nil {
			return p, fmt.Errorf("store: delete %s: leave %s: %w", uid, cv, err)
		}
	}
	// Relations both ways: uid's own lists, and the entries of others
	// that name uid (found through the reverse block index, or a scan of
	// the contact table: rosters have no reverse index).
	ks, err := s.keysWith(append(key(tabDedupe, uid), 0))
	if err != nil {
		return p, err
	}
	dead = append(dead, ks...)
	blocked, err := s.Blocked(uid)
	if err != nil {
		return p, err
	}
	blockers, err := s.BlockedBy(uid)
	if err != nil {
		return p, err
	}
	for _, o := range blocked {
		dead = append(dead, key(tabBlock, uid, o), key(tabBlockedB, o, uid))
	}
	for _, o := range blockers {
		dead = append(dead, key(tabBlock, o, uid), key(tabBlockedB, uid, o))
	}
	contacts, err := s.contactKeys(uid)
	if err != nil {
		return p, err
	}
	dead = append(dead, contacts...)
	p.Users = append(p.Users, blocked...)
	p.Users = append(p.Users, blockers...)
	p.Users = append(p.Users, s.contactUsers(contacts, uid)...)
	if err := s.deleteKeys(dead); err != nil {
		return p, err
	}
	return p, s.purgeStream(uid)
}

// leaveGroup appends uid's departure from gid (and an owner's hand-over)
// and returns the remaining members; left is false when uid was not a
// current member.
func (s *Store) leaveGroup(gid, uid string) (others []string, left bool, err error) {
	g, err := s.Group(gid)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	recs, order, err := s.Members(gid)
	if err != nil {
		return nil, false, err
	}
	as, others, ok := im.LeaveAppends(g, recs, order, uid)
	if !ok {
		return nil, false, nil
	}
	for _, a := range as {
		if err := s.Append(a); err != nil {
			return nil, false, err
		}
	}
	return others, true, nil
}

// leaveDM appends uid's departure from DM cv to the other user's stream,
// drops cv from uid's conversation list (through the sequencer, which
// caches that list) and sets uid's floor in cv to the event's seq.
func (s *Store) leaveDM(cv, uid string) error {
	a, b, ok := strings.Cut(strings.TrimPrefix(cv, "d:"), ":")
	if !ok {
		return nil
	}
	other := a
	if other == uid {
		other = b
	}
	ap := &im.Append{
		CV: cv, To: []string{other},
		Event:     im.Event{T: im.TMember, Op: "leave", Who: []string{uid}, By: uid},
		UserConvs: []im.UserConv{{UID: uid, CV: cv, Remove: true}},
	}
	if err := s.Append(ap); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(key(tabDMFloor, cv, uid), u64(ap.Event.Seq)) })
}

// purgeStream deletes uid's stream entries and raises its floor past the
// head in the same transactions, so a reader never sees entries of the
// old account and `sync` from 0 answers reset.
func (s *Store) purgeStream(uid string) error {
	prefix := append(key(tabStream, uid), 0)
	for {
		var n int
		err := s.db.Update(func(txn *badger.Txn) error {
			head, err := getU64(txn, key(tabUserUS, uid))
			if err != nil {
				return err
			}
			var dels [][]byte
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid() && len(dels) < purgeChunk; it.Next() {
				dels = append(dels, it.Item().KeyCopy(nil))
			}
			it.Close()
			for _, k := range dels {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			n = len(dels)
			return txn.Set(key(tabFloor, uid), u64(head+1))
		})
		if err != nil {
			return fmt.Errorf("store: purge stream of %s: %w", uid, err)
		}
		if n < purgeChunk {
			return nil
		}
	}
}

// DMFloor returns the last seq of DM cv that an earlier, deleted account
// uid could read (0 when there was none): uid reads only seqs after it.
func (s *Store) DMFloor(cv, uid string) (uint64, error) {
	var n uint64
	err := s.db.View(func(txn *badger.Txn) (err error) {
		n, err = getU64(txn, key(tabDMFloor, cv, uid))
		return err
	})
	return n, err
}

func (s *Store) keysWith(prefix []byte) ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, it.Item().KeyCopy(nil))
		}
		return nil
	})
	return out, err
}

// contactKeys returns uid's roster entries and every roster entry naming
// uid (one scan of the contact table).
func (s *Store) contactKeys(uid string) ([][]byte, error) {
	var out [][]byte
	own := append(key(tabContact, uid), 0)
	suffix := append([]byte{0}, uid...)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tabContact}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if bytes.HasPrefix(k, own) || bytes.HasSuffix(k, suffix) {
				out = append(out, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	return out, err
}

// contactUsers names the other side of each roster key.
func (s *Store) contactUsers(keys [][]byte, uid string) []string {
	var out []string
	for _, k := range keys {
		a, b, _ := bytes.Cut(k[1:], []byte{0})
		if string(a) == uid {
			out = append(out, string(b))
		} else {
			out = append(out, string(a))
		}
	}
	return out
}

func (s *Store) deleteKeys(keys [][]byte) error {
	for len(keys) > 0 {
		n := min(len(keys), purgeChunk)
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys[:n] {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

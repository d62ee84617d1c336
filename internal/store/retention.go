package store

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// tabFloor holds each user's stream floor: {uid} → the lowest us that may
// still be kept. Every stream entry below it has been trimmed by age.
const tabFloor byte = 0x20

// trimChunk bounds the keys one trimmer transaction deletes; trimHeads
// bounds how many streams or conversations one scan step collects.
const (
	trimChunk = 1000
	trimHeads = 256
)

// DefaultTrimEvery is how often the trimmer runs when Options.TrimEvery
// is 0.
const DefaultTrimEvery = time.Minute

// TrimStats counts what one trimming pass deleted.
type TrimStats struct {
	Pointers  int // stream entries (0x12)
	Events    int // conversation events (0x10)
	Aux       int // aux events (0x11)
	IDs       int // event id index entries (0x13)
	Reactions int // reaction records (0x1F)
}

// StreamFloor returns the lowest us of uid's stream that may still be
// kept (0 when nothing was ever trimmed).
func (s *Store) StreamFloor(uid string) (uint64, error) {
	var n uint64
	err := s.db.View(func(txn *badger.Txn) (err error) {
		n, err = getU64(txn, key(tabFloor, uid))
		return err
	})
	return n, err
}

// trimLoop trims what is older than its retention every period until
// Close: the server default (Options.Retention) and each conversation's
// own (SetRetention).
func (s *Store) trimLoop(o Options) {
	defer s.wg.Done()
	t := time.NewTicker(o.TrimEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := o.Now()
			var cutoff time.Time
			if o.Retention > 0 {
				cutoff = now.Add(-o.Retention)
			}
			st, err := s.trimAt(now, cutoff, s.stop)
			if err != nil && !errors.Is(err, ErrClosed) {
				s.log.Warn("retention: trim", "error", err)
			}
			if o.OnTrim != nil {
				o.OnTrim(st, err)
			}
		}
	}
}

// Trim deletes what is older than cutoff (the server default) or than
// its conversation's own retention, measured from the store's clock:
// stream entries (raising each user's stream floor), conversation and
// aux events and their id index, and reactions (by the default only).
// Events under a legal hold are kept. Counters, markers, memberships and
// conversation lists stay, so seq and us never go backwards. It works in
// small transactions and may run while the store is in use; the
// background trimmer calls it with now − retention.
func (s *Store) Trim(cutoff time.Time) (TrimStats, error) {
	return s.trimAt(s.opts.Now(), cutoff, s.stop)
}

func (s *Store) trimAt(now, cutoff time.Time, quit <-chan struct{}) (TrimStats, error) {
	var st TrimStats
	rets, err := s.convRetentions()
	if err != nil {
		return st, err
	}
	def, cutoffOf := im.Cutoffs(now, cutoff, rets)
	if def == 0 && len(rets) == 0 {
		return st, nil
	}
	// Streams first, by the default only: their entries are judged by the
	// events they point to. A stream entry whose event a shorter
	// conversation retention removed is skipped by readers and goes when
	// the default reaches it.
	if def > 0 {
		if err := s.trimLogs(tabStream, func(string) int64 { return def }, &st.Pointers, quit); err != nil {
			return st, err
		}
	}
	if def > 0 {
		// Every conversation: one seek each finds those with old events.
		if err := s.trimLogs(tabAux, cutoffOf, &st.Aux, quit); err != nil {
			return st, err
		}
		if err := s.trimConvs(cutoffOf, &st, quit); err != nil {
			return st, err
		}
		// Reactions are keyed by the message's ULID, whose first 48 bits
		// are its ts: trimmed from the table's start by the default.
		if err := s.trimULIDs(tabReact, def, &st.Reactions, quit); err != nil {
			return st, err
		}
		return st, nil
	}
	// No default: only the conversations with their own retention.
	for cv := range rets {
		n, err := s.trimLog(tabAux, cv, cutoffOf(cv), quit)
		st.Aux += n
		if err != nil {
			return st, err
		}
		if err := s.trimConv(cv, cutoffOf(cv), &st, quit); err != nil {
			return st, err
		}
	}
	return st, nil
}

// convRetentions reads every conversation's own retention.
func (s *Store) convRetentions() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tabConvRet}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				if len(v) == 8 {
					out[string(it.Item().Key()[1:])] = time.Duration(binary.BigEndian.Uint64(v)) * time.Millisecond
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// trimConvs trims every conversation whose first event is older than its
// cutoff.
func (s *Store) trimConvs(cutoffOf func(string) int64, st *TrimStats, quit <-chan struct{}) error {
	var names []string
	return s.scanOld(tabEvent, cutoffOf, &names, quit, func(batch []string) error {
		for _, cv := range batch {
			if err := s.trimConv(cv, cutoffOf(cv), st, quit); err != nil {
				return err
			}
		}
		return nil
	})
}

// trimConv deletes the events of cv older than cutoff, from its start,
// with their id index (and edit index) entries, trimChunk per
// transaction. Events a legal hold covers, and unreadable ones (tern
// store check reports them), are stepped over and kept. The Forgetter is
// told what went after each transaction.
func (s *Store) trimConv(cv string, cutoff int64, st *TrimStats, quit <-chan struct{}) error {
	if cutoff <= 0 {
		return nil
	}
	hs, err := s.loadHolds()
	if err != nil {
		return err
	}
	prefix := append(key(tabEvent, cv), 0)
	var from uint64
	for {
		if stopped(quit) {
			return ErrClosed
		}
		var gone []codec.Event
		var dels [][]byte
		done := false
		err := s.db.Update(func(txn *badger.Txn) error {
			gone, dels = gone[:0], dels[:0]
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
			next := from
			for it.Seek(seqKey(tabEvent, cv, from)); ; it.Next() {
				if !it.Valid() {
					done = true
					break
				}
				if len(dels) >= trimChunk {
					break
				}
				item := it.Item()
				k := item.Key()
				next = binary.BigEndian.Uint64(k[len(k)-8:]) + 1
				var ev codec.Event
				ok, err := s.decode(item, &ev)
				if err != nil {
					it.Close()
					return err
				}
				if ok && ev.TS >= cutoff {
					done = true
					break
				}
				if !ok || im.HeldBy(hs, &ev) {
					continue
				}
				gone = append(gone, ev)
				dels = append(dels, item.KeyCopy(nil), append([]byte{tabEventID}, ev.ID[:]...))
				if ev.T == im.TEdit && ev.Tgt != nil {
					dels = append(dels, editKey(*ev.Tgt, ev.ID))
				}
			}
			it.Close()
			from = next
			for _, k := range dels {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, badger.ErrConflict) {
			return nil // the next pass tries again
		}
		if err != nil {
			return err
		}
		st.Events += len(gone)
		st.IDs += len(gone)
		if fn := s.trimmedAtt.Load(); fn != nil {
			for _, ev := range gone {
				for _, a := range ev.Att {
					(*fn)(a.FID, ev.ID)
				}
			}
		}
		if len(gone) > 0 && s.opts.Forget != nil {
			fs := make([]im.Forgotten, len(gone))
			for i, ev := range gone {
				fs[i] = im.Forgotten{CV: ev.CV, ID: ev.ID, Att: ev.Att}
			}
			s.opts.Forget.Forget(fs)
		}
		if done {
			return nil
		}
	}
}

func stopped(quit <-chan struct{}) bool {
	select {
	case <-quit:
		return true
	default:
		return false
	}
}

// trimLogs trims every log of table tab (keys tab|name|0|n) whose first
// entry is older than its cutoff, from its start.
func (s *Store) trimLogs(tab byte, cutoffOf func(string) int64, count *int, quit <-chan struct{}) error {
	var names []string
	return s.scanOld(tab, cutoffOf, &names, quit, func(batch []string) error {
		for _, name := range batch {
			n, err := s.trimLog(tab, name, cutoffOf(name), quit)
			*count += n
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// scanOld finds the logs of table tab whose first entry is older than
// their cutoff (or gone), trimHeads at a time, and hands each batch to fn.
func (s *Store) scanOld(tab byte, cutoffOf func(string) int64, names *[]string, quit <-chan struct{}, fn func([]string) error) error {
	from := []byte{tab}
	for {
		if stopped(quit) {
			return ErrClosed
		}
		*names = (*names)[:0]
		var next []byte
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tab}, PrefetchValues: false})
			defer it.Close()
			for it.Seek(from); it.Valid(); {
				k := it.Item().Key()
				if len(k) < 10 {
					it.Next()
					continue
				}
				name := string(k[1 : len(k)-9])
				if cutoff := cutoffOf(name); cutoff > 0 {
					ts, found, err := s.entryTS(txn, tab, it.Item())
					if err != nil {
						return err
					}
					if !found || ts < cutoff {
						*names = append(*names, name)
					}
				}
				next = append(key(tab, name), 1) // the next name's first key
				if len(*names) >= trimHeads {
					return nil
				}
				it.Seek(next)
			}
			next = nil
			return nil
		})
		if err != nil {
			return err
		}
		if err := fn(*names); err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		from = next
	}
}

// entryTS returns the ts of a log entry: for a stream entry that of the
// event it points to (found is false when that event is gone), else the
// event's own.
func (s *Store) entryTS(txn *badger.Txn, tab byte, item *badger.Item) (ts int64, found bool, err error) {
	var ev codec.Event
	if tab == tabStream {
		p, err := item.ValueCopy(nil)
		if err != nil {
			return 0, false, err
		}
		ev, found, err = s.loadEvent(txn, p)
		return ev.TS, found, err
	}
	err = item.Value(func(v []byte) error { return codec.UnmarshalStored(v, &ev) })
	return ev.TS, err == nil, err
}

// trimLog deletes the entries of one log from its start while they are
// older than cutoff, trimChunk per transaction. For a stream an entry
// whose event is gone counts as old, and the user's floor is raised in
// the same transaction as the deletes, so a reader never sees a gap
// without the floor that explains it.
func (s *Store) trimLog(tab byte, name string, cutoff int64, quit <-chan struct{}) (int, error) {
	total := 0
	prefix := append(key(tab, name), 0)
	for {
		if stopped(quit) {
			return total, ErrClosed
		}
		var dels [][]byte
		var atts []trimmedAtt
		done := false
		err := s.db.Update(func(txn *badger.Txn) error {
			dels, atts = dels[:0], atts[:0]
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
			var last uint64
			for it.Rewind(); ; it.Next() {
				if !it.Valid() {
					done = true
					break
				}
				if len(dels) >= trimChunk {
					break
				}
				item := it.Item()
				ts, found, err := s.entryTS(txn, tab, item)
				if err != nil {
					it.Close()
					return err
				}
				if found && ts >= cutoff {
					done = true
					break
				}
				k := item.KeyCopy(nil)
				last = binary.BigEndian.Uint64(k[len(k)-8:])
				dels = append(dels, k)
				if tab == tabEvent && found {
					if atts, err = appendAtts(atts, item); err != nil {
						it.Close()
						return err
					}
				}
			}
			it.Close() // a read-write transaction allows one iterator and no writes under it
			for _, k := range dels {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			if tab == tabStream && len(dels) > 0 {
				return txn.Set(key(tabFloor, name), u64(last+1))
			}
			return nil
		})
		if errors.Is(err, badger.ErrConflict) {
			return total, nil // the next pass tries again
		}
		if err != nil {
			return total, err
		}
		if fn := s.trimmedAtt.Load(); fn != nil {
			for _, a := range atts {
				(*fn)(a.fid, a.id)
			}
		}
		total += len(dels)
		if done || len(dels) == 0 {
			return total, nil
		}
	}
}

// trimmedAtt is a file attached by a message the trimmer deleted.
type trimmedAtt struct {
	fid string
	id  ulid.ULID
}

// appendAtts adds the attachments of the stored event in item to atts.
func appendAtts(atts []trimmedAtt, item *badger.Item) ([]trimmedAtt, error) {
	var ev codec.Event
	if err := item.Value(func(v []byte) error { return codec.UnmarshalStored(v, &ev) }); err != nil {
		return atts, err
	}
	for _, a := range ev.Att {
		atts = append(atts, trimmedAtt{fid: a.FID, id: ev.ID})
	}
	return atts, nil
}

// SetTrimmedAttachments makes the trimmer call fn, after each commit, for
// every file attached by a message it deleted (fid, the message's id): the
// file store drops that reference. Disappearing messages (ttl) expire in
// Badger without a pass and are not reported.
func (s *Store) SetTrimmedAttachments(fn func(fid string, id ulid.ULID)) { s.trimmedAtt.Store(&fn) }

// trimULIDs deletes the entries of a table keyed tab|ulid|… from its
// start while the ULID's time is before cutoff.
func (s *Store) trimULIDs(tab byte, cutoff int64, count *int, quit <-chan struct{}) error {
	for {
		if stopped(quit) {
			return ErrClosed
		}
		var dels [][]byte
		done := false
		err := s.db.Update(func(txn *badger.Txn) error {
			dels = dels[:0]
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tab}, PrefetchValues: false})
			for it.Rewind(); ; it.Next() {
				if !it.Valid() {
					done = true
					break
				}
				if len(dels) >= trimChunk {
					break
				}
				k := it.Item().Key()
				if len(k) < 17 {
					continue
				}
				var ms [8]byte
				copy(ms[2:], k[1:7])
				if int64(binary.BigEndian.Uint64(ms[:])) >= cutoff {
					done = true
					break
				}
				dels = append(dels, it.Item().KeyCopy(nil))
			}
			it.Close()
			for _, k := range dels {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, badger.ErrConflict) {
			return nil
		}
		if err != nil {
			return err
		}
		*count += len(dels)
		if done || len(dels) == 0 {
			return nil
		}
	}
}

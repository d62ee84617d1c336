package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-im/tern/internal/files"
)

// File metadata (PROTOCOL §11), tables 0x40–0x45; docs/storage.md has the
// layout. The content itself lives on disk under {data}/files, never in
// Badger.
const (
	tabFile      byte = 0x40 // {fid} → files.File (JSON)
	tabFileHash  byte = 0x41 // {owner}\x00{h}\x00{fid} → empty: ByHash
	tabBlobUser  byte = 0x42 // {h}\x00{fid} → empty: committed files with content h
	tabFileRef   byte = 0x43 // {fid}\x00{ref} → empty
	tabFilePend  byte = 0x44 // {since ns, 8 BE}{fid} → empty: files without references
	tabFileUsage byte = 0x45 // {owner} → uint64 bytes counted against the quota
)

// FileMeta returns the store's implementation of the files.Meta port.
func (s *Store) FileMeta() files.Meta { return fileMeta{s} }

type fileMeta struct{ s *Store }

var _ files.Meta = fileMeta{}

// update runs fn in a read-write transaction, retrying on conflicts (two
// chunks' commits racing on one usage counter, say).
func (m fileMeta) update(fn func(txn *badger.Txn) error) error {
	for i := 0; ; i++ {
		err := m.s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) || i == 9 {
			if errors.Is(err, badger.ErrDBClosed) {
				return ErrClosed
			}
			return err
		}
	}
}

func pendKey(f *files.File) []byte {
	k := []byte{tabFilePend}
	k = binary.BigEndian.AppendUint64(k, uint64(f.Since().UnixNano()))
	return append(k, f.FID...)
}

func fileGet(txn *badger.Txn, fid string) (files.File, error) {
	var f files.File
	item, err := txn.Get(key(tabFile, fid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return f, files.ErrNotFound
	}
	if err != nil {
		return f, err
	}
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, &f) })
	if err != nil {
		return f, fmt.Errorf("store: file %s: %w", fid, err)
	}
	return f, nil
}

func filePut(txn *badger.Txn, f *files.File) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return txn.Set(key(tabFile, f.FID), b)
}

func fileUsage(txn *badger.Txn, owner string) (int64, error) {
	item, err := txn.Get(key(tabFileUsage, owner))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("store: usage of %s is %d bytes", owner, len(v))
		}
		n = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return n, err
}

func addUsage(txn *badger.Txn, owner string, delta int64) error {
	n, err := fileUsage(txn, owner)
	if err != nil {
		return err
	}
	return txn.Set(key(tabFileUsage, owner), binary.BigEndian.AppendUint64(nil, uint64(max(n+delta, 0))))
}

// hasRefs reports whether fid has at least one reference.
func hasRefs(txn *badger.Txn, fid string) bool {
	prefix := append(key(tabFileRef, fid), 0)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Rewind()
	return it.Valid()
}

func (m fileMeta) Create(f files.File, quota int64) error {
	return m.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(key(tabFile, f.FID)); err == nil {
			return files.ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		used, err := fileUsage(txn, f.Owner)
		if err != nil {
			return err
		}
		if quota >= 0 && used+f.Size > quota {
			return files.ErrQuota
		}
		if err := addUsage(txn, f.Owner, f.Size); err != nil {
			return err
		}
		if f.Hash != "" {
			if err := txn.Set(key(tabFileHash, f.Owner, f.Hash, f.FID), nil); err != nil {
				return err
			}
		}
		if err := txn.Set(pendKey(&f), nil); err != nil {
			return err
		}
		return filePut(txn, &f)
	})
}

func (m fileMeta) Get(fid string) (files.File, error) {
	var f files.File
	err := m.s.db.View(func(txn *badger.Txn) (err error) {
		f, err = fileGet(txn, fid)
		return err
	})
	return f, err
}

func (m fileMeta) ByHash(owner, h string) (files.File, error) {
	var f files.File
	err := m.s.db.View(func(txn *badger.Txn) error {
		prefix := append(key(tabFileHash, owner, h), 0)
		// fids are ULIDs: the last key is the newest file.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		it.Seek(append(prefix, 0xFF))
		if !it.Valid() {
			return files.ErrNotFound
		}
		var err error
		f, err = fileGet(txn, string(it.Item().Key()[len(prefix):]))
		return err
	})
	return f, err
}

func (m fileMeta) Update(f files.File) error {
	return m.update(func(txn *badger.Txn) error {
		old, err := fileGet(txn, f.FID)
		if err != nil {
			return err
		}
		f.Owner, f.Size, f.Created = old.Owner, old.Size, old.Created
		if old.Hash != f.Hash {
			if old.Hash != "" {
				if err := txn.Delete(key(tabFileHash, old.Owner, old.Hash, f.FID)); err != nil {
					return err
				}
			}
			if f.Hash != "" {
				if err := txn.Set(key(tabFileHash, f.Owner, f.Hash, f.FID), nil); err != nil {
					return err
				}
			}
		}
		if old.IsCommitted() && (!f.IsCommitted() || old.Hash != f.Hash) {
			if err := txn.Delete(key(tabBlobUser, old.Hash, f.FID)); err != nil {
				return err
			}
		}
		if f.IsCommitted() && f.Hash != "" {
			if err := txn.Set(key(tabBlobUser, f.Hash, f.FID), nil); err != nil {
				return err
			}
		}
		if !hasRefs(txn, f.FID) && !old.Since().Equal(f.Since()) {
			if err := txn.Delete(pendKey(&old)); err != nil {
				return err
			}
			if err := txn.Set(pendKey(&f), nil); err != nil {
				return err
			}
		}
		return filePut(txn, &f)
	})
}

func (m fileMeta) Delete(fid string) error {
	return m.update(func(txn *badger.Txn) error {
		f, err := fileGet(txn, fid)
		if errors.Is(err, files.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		dels := [][]byte{key(tabFile, fid), pendKey(&f)}
		if f.Hash != "" {
			dels = append(dels, key(tabFileHash, f.Owner, f.Hash, fid), key(tabBlobUser, f.Hash, fid))
		}
		prefix := append(key(tabFileRef, fid), 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Rewind(); it.Valid(); it.Next() {
			dels = append(dels, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range dels {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return addUsage(txn, f.Owner, -f.Size)
	})
}

func (m fileMeta) Usage(owner string) (int64, error) {
	var n int64
	err := m.s.db.View(func(txn *badger.Txn) (err error) {
		n, err = fileUsage(txn, owner)
		return err
	})
	return n, err
}

func (m fileMeta) AddRef(fid, ref string) error {
	return m.update(func(txn *badger.Txn) error {
		f, err := fileGet(txn, fid)
		if err != nil {
			return err
		}
		if err := txn.Delete(pendKey(&f)); err != nil {
			return err
		}
		return txn.Set(key(tabFileRef, fid, ref), nil)
	})
}

func (m fileMeta) RemoveRef(fid, ref string) (int, error) {
	var left int
	err := m.update(func(txn *badger.Txn) error {
		left = 0
		k := key(tabFileRef, fid, ref)
		if err := txn.Delete(k); err != nil {
			return err
		}
		prefix := append(key(tabFileRef, fid), 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Rewind(); it.Valid(); it.Next() {
			if string(it.Item().Key()) != string(k) {
				left++
			}
		}
		it.Close()
		if left > 0 {
			return nil
		}
		f, err := fileGet(txn, fid)
		if errors.Is(err, files.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return txn.Set(pendKey(&f), nil)
	})
	return left, err
}

func (m fileMeta) Refs(fid string) ([]string, error) {
	prefix := append(key(tabFileRef, fid), 0)
	refs, err := m.s.keysUnder(prefix)
	if refs == nil {
		refs = []string{}
	}
	return refs, err
}

func (m fileMeta) RefsAfter(fid, ref string, max int) ([]files.FileRef, error) {
	var out []files.FileRef
	err := m.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tabFileRef}})
		defer it.Close()
		start := []byte{tabFileRef}
		if fid != "" {
			start = append(key(tabFileRef, fid, ref), 0) // just after (fid, ref)
		}
		for it.Seek(start); it.Valid() && len(out) < max; it.Next() {
			f, r, ok := strings.Cut(string(it.Item().Key()[1:]), "\x00")
			if ok {
				out = append(out, files.FileRef{FID: f, Ref: r})
			}
		}
		return nil
	})
	return out, err
}

func (m fileMeta) BlobInUse(h string) (bool, error) {
	var used bool
	err := m.s.db.View(func(txn *badger.Txn) error {
		prefix := append(key(tabBlobUser, h), 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Rewind()
		used = it.Valid()
		return nil
	})
	return used, err
}

func (m fileMeta) Pending(before time.Time, max int) ([]files.File, error) {
	var out []files.File
	err := m.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tabFilePend}})
		defer it.Close()
		limit := uint64(before.UnixNano())
		for it.Rewind(); it.Valid() && len(out) < max; it.Next() {
			k := it.Item().Key()
			if len(k) < 9 || binary.BigEndian.Uint64(k[1:9]) >= limit {
				break
			}
			f, err := fileGet(txn, string(k[9:]))
			if errors.Is(err, files.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	return out, err
}

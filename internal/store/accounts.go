package store

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/tern-im/tern/internal/accounts"
)

// PutUser creates a user; ErrExists if the uid is taken.
func (s *Store) PutUser(u accounts.User) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		k := key(tabUser, u.UID)
		for _, k := range [][]byte{k, key(tabDeleting, u.UID)} {
			if _, err := txn.Get(k); err == nil {
				return ErrExists // an account, or one whose deletion is unfinished
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
		}
		return putJSON(txn, k, u)
	})
}

// UpdateUser applies fn to an existing user record atomically.
func (s *Store) UpdateUser(uid string, fn func(*accounts.User) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		k := key(tabUser, uid)
		var u accounts.User
		if err := getJSON(txn, k, &u); err != nil {
			return err
		}
		if err := fn(&u); err != nil {
			return err
		}
		return putJSON(txn, k, u)
	})
}

// User returns one user.
func (s *Store) User(uid string) (accounts.User, error) {
	var u accounts.User
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, key(tabUser, uid), &u) })
	return u, err
}

// Users lists all users in uid order.
func (s *Store) Users() ([]accounts.User, error) {
	var out []accounts.User
	err := s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, []byte{tabUser}, func(_ []byte, v []byte) error {
			var u accounts.User
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	return out, err
}

// PutToken stores a token under the hash of its secret.
func (s *Store) PutToken(hash []byte, t accounts.Token) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		if err := getJSON(txn, key(tabUser, t.UID), &accounts.User{}); err != nil {
			return err
		}
		if err := putJSON(txn, append([]byte{tabToken}, hash...), t); err != nil {
			return err
		}
		return txn.Set(key(tabDevToken, t.UID, t.DID, t.ID), hash)
	})
}

// TokenByHash finds a token by the SHA-256 of its secret.
func (s *Store) TokenByHash(hash []byte) (accounts.Token, error) {
	var t accounts.Token
	err := s.db.View(func(txn *badger.Txn) error {
		return getJSON(txn, append([]byte{tabToken}, hash...), &t)
	})
	return t, err
}

// Tokens lists a user's tokens (secrets are never stored).
func (s *Store) Tokens(uid string) ([]accounts.Token, error) {
	var out []accounts.Token
	err := s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, append(key(tabDevToken, uid), 0), func(_ []byte, hash []byte) error {
			var t accounts.Token
			if err := getJSON(txn, append([]byte{tabToken}, hash...), &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// RevokeTokens deletes the tokens of uid's device did (every device when
// did is empty), or only the one with id when id is set. It returns how many
// it removed.
func (s *Store) RevokeTokens(uid, did, id string) (int, error) {
	var n int
	err := s.db.Update(func(txn *badger.Txn) (err error) {
		n, err = deleteTokens(txn, uid, did, id)
		return err
	})
	return n, err
}

func deleteTokens(txn *badger.Txn, uid, did, id string) (int, error) {
	prefix := append(key(tabDevToken, uid), 0)
	if did != "" {
		prefix = append(key(tabDevToken, uid, did), 0)
	}
	var dels [][]byte
	err := scanJSON(txn, prefix, func(k, hash []byte) error {
		if id != "" && !bytes.HasSuffix(k, append([]byte{0}, id...)) {
			return nil
		}
		dels = append(dels, bytes.Clone(k), append([]byte{tabToken}, hash...))
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range dels {
		if err := txn.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(dels) / 2, nil
}

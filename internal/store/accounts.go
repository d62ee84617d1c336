package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// User is an account record.
type User struct {
	UID      string    `json:"uid"`
	Hash     string    `json:"hash"` // PHC-encoded argon2id hash
	Admin    bool      `json:"admin,omitempty"`
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created"`
}

// Token is a device token record, stored under the SHA-256 of the secret.
type Token struct {
	ID      string    `json:"id"`
	UID     string    `json:"uid"`
	DID     string    `json:"did"`
	Created time.Time `json:"created"`
}

// PutUser creates a user; ErrExists if the uid is taken.
func (s *Store) PutUser(u User) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		k := key(tabUser, u.UID)
		if _, err := txn.Get(k); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return putJSON(txn, k, u)
	})
}

// UpdateUser applies fn to an existing user record atomically.
func (s *Store) UpdateUser(uid string, fn func(*User) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		k := key(tabUser, uid)
		var u User
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
func (s *Store) User(uid string) (User, error) {
	var u User
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, key(tabUser, uid), &u) })
	return u, err
}

// Users lists all users in uid order.
func (s *Store) Users() ([]User, error) {
	var out []User
	err := s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, []byte{tabUser}, func(_ []byte, v []byte) error {
			var u User
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
func (s *Store) PutToken(hash []byte, t Token) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		if err := getJSON(txn, key(tabUser, t.UID), &User{}); err != nil {
			return err
		}
		if err := putJSON(txn, append([]byte{tabToken}, hash...), t); err != nil {
			return err
		}
		return txn.Set(key(tabDevToken, t.UID, t.DID, t.ID), hash)
	})
}

// TokenByHash finds a token by the SHA-256 of its secret.
func (s *Store) TokenByHash(hash []byte) (Token, error) {
	var t Token
	err := s.db.View(func(txn *badger.Txn) error {
		return getJSON(txn, append([]byte{tabToken}, hash...), &t)
	})
	return t, err
}

// Tokens lists a user's tokens (secrets are never stored).
func (s *Store) Tokens(uid string) ([]Token, error) {
	var out []Token
	err := s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, append(key(tabDevToken, uid), 0), func(_ []byte, hash []byte) error {
			var t Token
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

func putJSON(txn *badger.Txn, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(k, b)
}

func getJSON(txn *badger.Txn, k []byte, v any) error {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("store: decode %x: %w", k[:1], err)
		}
		return nil
	})
}

// scanJSON calls fn with each key and value under prefix, in key order.
func scanJSON(txn *badger.Txn, prefix []byte, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := fn(item.Key(), v); err != nil {
			return err
		}
	}
	return nil
}

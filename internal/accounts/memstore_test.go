package accounts

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tern-im/tern/internal/im"
)

// memStore is an in-memory Store for the package's own tests (the Badger
// one is tested from accounts_test, which may import internal/store).
type memStore struct {
	mu     sync.Mutex
	users  map[string]User
	tokens map[string]Token // by hash
}

func newService(t testing.TB) *Service {
	t.Helper()
	st := &memStore{users: map[string]User{}, tokens: map[string]Token{}}
	return New(st, Params{Time: 1, Memory: 1 << 10, Threads: 1}, 2)
}

func (m *memStore) PutUser(u User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[u.UID]; ok {
		return im.ErrExists
	}
	m.users[u.UID] = u
	return nil
}

func (m *memStore) UpdateUser(uid string, fn func(*User) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[uid]
	if !ok {
		return im.ErrNotFound
	}
	if err := fn(&u); err != nil {
		return err
	}
	m.users[uid] = u
	return nil
}

func (m *memStore) User(uid string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[uid]
	if !ok {
		return User{}, im.ErrNotFound
	}
	return u, nil
}

func (m *memStore) Users() ([]User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []User
	for _, u := range m.users {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.UID, b.UID) })
	return out, nil
}

func (m *memStore) DeleteUser(uid string) (Purged, error) {
	if _, err := m.RevokeTokens(uid, "", ""); err != nil {
		return Purged{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[uid]; !ok {
		return Purged{}, im.ErrNotFound
	}
	delete(m.users, uid)
	return Purged{}, nil
}

func (m *memStore) PutToken(hash []byte, t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[t.UID]; !ok {
		return im.ErrNotFound
	}
	m.tokens[string(hash)] = t
	return nil
}

func (m *memStore) TokenByHash(hash []byte) (Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[string(hash)]
	if !ok {
		return Token{}, im.ErrNotFound
	}
	return t, nil
}

func (m *memStore) Tokens(uid string) ([]Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Token
	for _, t := range m.tokens {
		if t.UID == uid {
			out = append(out, t)
		}
	}
	return out, nil
}

func (m *memStore) RevokeTokens(uid, did, id string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for h, t := range m.tokens {
		if t.UID == uid && (did == "" || t.DID == did) && (id == "" || t.ID == id) {
			delete(m.tokens, h)
			n++
		}
	}
	return n, nil
}

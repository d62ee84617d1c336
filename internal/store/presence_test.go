package store

import (
	"errors"
	"testing"

	"github.com/tern-im/tern/internal/im"
)

func openDir(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestPresence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openDir(t, dir)
	if _, err := s.Presence("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Presence(unknown) = %v, want ErrNotFound", err)
	}
	alice := im.Presence{S: "away", PV: 7, LS: 1732262400123, D: 2, TX: "on shift"}
	if err := s.PutPresence("alice", alice); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPresences(map[string]im.Presence{"bob": {S: "off", PV: 1, LS: 5}, "carol": {S: "on", PV: 3, D: 1}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Presence("alice"); err != nil || got != alice {
		t.Fatalf("Presence(alice) = %+v, %v; want %+v", got, err, alice)
	}
	m, err := s.Presences([]string{"alice", "bob", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["alice"] != alice || m["bob"].PV != 1 {
		t.Fatalf("Presences = %+v", m)
	}
	// Closing and reopening keeps everything; Range walks in uid order.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	var uids []string
	if err := s.RangePresence(func(uid string, p im.Presence) error {
		uids = append(uids, uid)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(uids) != 3 || uids[0] != "alice" || uids[1] != "bob" || uids[2] != "carol" {
		t.Fatalf("RangePresence uids = %v", uids)
	}
}

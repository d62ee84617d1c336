package store

import (
	"github.com/dgraph-io/badger/v4"

	"errors"
	"testing"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// createGroup appends a group's creation with members and roles.
func createGroup(t *testing.T, s *Store, gid string, roles map[string]string, owner string) {
	t.Helper()
	a := &im.Append{CV: "g:" + gid, Group: &im.Group{GID: gid, Owner: owner, N: len(roles)},
		Event: codec.Event{T: codec.TMember, Op: "add", By: owner}}
	for u, r := range roles {
		a.To = append(a.To, u)
		a.Members = append(a.Members, im.MemberChange{GID: gid, UID: u, Rec: im.Member{Role: r}, SetFrom: true})
		a.UserConvs = append(a.UserConvs, im.UserConv{UID: u, CV: "g:" + gid})
	}
	if err := s.Append(a); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteUserGroups: an owner's group passes to its admin, a group the
// user was alone in is left empty, the user's records are gone, and a
// second delete is ErrNotFound.
func TestDeleteUserGroups(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := s.PutUser(accounts.User{UID: u}); err != nil {
			t.Fatal(err)
		}
	}
	createGroup(t, s, "ops", map[string]string{"alice": "owner", "bob": "member", "carol": "admin"}, "alice")
	createGroup(t, s, "solo", map[string]string{"alice": "owner"}, "alice")

	p, err := s.DeleteUser("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Groups) != 2 {
		t.Fatalf("purged groups %v", p.Groups)
	}
	recs, order, err := s.Members("ops")
	if err != nil || len(order) != 2 || recs["carol"].Role != "owner" || recs["bob"].Role != "member" {
		t.Fatalf("ops members %v %v %v", order, recs, err)
	}
	if g, err := s.Group("ops"); err != nil || g.Owner != "carol" || g.N != 2 {
		t.Fatalf("ops %+v %v", g, err)
	}
	if g, err := s.Group("solo"); err != nil || g.N != 0 {
		t.Fatalf("solo %+v %v", g, err)
	}
	for _, gid := range []string{"ops", "solo"} {
		if _, err := s.Member(gid, "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("alice's %s record: %v", gid, err)
		}
	}
	if cvs, err := s.UserConvs("alice"); err != nil || len(cvs) != 0 {
		t.Fatalf("alice's convs %v %v", cvs, err)
	}
	if _, _, err := s.Stream("alice", 0, 10); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("alice's stream from 0: %v, want ErrTrimmed", err)
	}
	evs, _, err := s.Stream("bob", 0, 10)
	if err != nil || len(evs) != 3 || evs[1].Op != "role" || evs[2].Op != "leave" {
		t.Fatalf("bob's stream %+v %v", evs, err)
	}
	if _, err := s.DeleteUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestDeleteUserResumes: a deletion cut short after its first step (the
// account gone, the rest not yet purged) blocks a new account with the
// uid and is finished by running DeleteUser again. Before the deletion
// marker, the re-run answered "not found" and the uid could be taken
// over with the old memberships still in place.
func TestDeleteUserResumes(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	for _, u := range []string{"alice", "bob"} {
		if err := s.PutUser(accounts.User{UID: u}); err != nil {
			t.Fatal(err)
		}
	}
	createGroup(t, s, "ops", map[string]string{"alice": "member", "bob": "owner"}, "bob")
	// Step 1 alone, as DeleteUser does it before a crash.
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(key(tabDeleting, "alice"), nil); err != nil {
			return err
		}
		return txn.Delete(key(tabUser, "alice"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(accounts.User{UID: "alice"}); !errors.Is(err, ErrExists) {
		t.Fatalf("new account during an unfinished deletion: %v", err)
	}
	if _, err := s.DeleteUser("alice"); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if _, err := s.Member("ops", "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice still a member after the resumed deletion: %v", err)
	}
	if _, err := s.DeleteUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("third delete: %v", err)
	}
	if err := s.PutUser(accounts.User{UID: "alice"}); err != nil {
		t.Fatalf("new account after the deletion finished: %v", err)
	}
}

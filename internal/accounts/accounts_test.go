package accounts_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/store"
)

func newService(t testing.TB) *accounts.Service {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return accounts.New(st, accounts.Params{Time: 1, Memory: 1 << 10, Threads: 1}, 2)
}

func TestPasswordsAndTokens(t *testing.T) {
	t.Parallel()
	s := newService(t)
	if err := s.AddUser("alice", "correct-horse", false); err != nil {
		t.Fatal(err)
	}
	u, err := s.User("alice")
	if err != nil || !strings.HasPrefix(u.Hash, "$argon2id$v=19$m=1024,t=1,p=1$") || strings.Contains(u.Hash, "correct-horse") {
		t.Fatalf("stored hash %q, %v", u.Hash, err)
	}
	if _, err := s.Authenticate("alice", "p1", "correct-horse"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if _, err := s.Authenticate("alice", "p1", "wrong-horse"); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.Authenticate("nobody", "p1", "correct-horse"); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	secret, tok, err := s.CreateToken("alice", "p1")
	if err != nil || !strings.HasPrefix(secret, accounts.TokenPrefix) || tok.DID != "p1" {
		t.Fatalf("token: %q %+v %v", secret, tok, err)
	}
	if id, err := s.Authenticate("alice", "p1", secret); err != nil || id.UID != "alice" || id.DID != "p1" {
		t.Fatalf("token auth: %+v %v", id, err)
	}
	if _, err := s.Authenticate("alice", "p2", secret); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("token on another device: %v", err)
	}
	if err := s.SetDisabled("alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "p1", secret); !errors.Is(err, accounts.ErrDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	if _, err := s.Authenticate("alice", "p1", "wrong-horse"); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("disabled + wrong password must not reveal the account state: %v", err)
	}
	if err := s.AddUser("alice", "another-pass", false); !errors.Is(err, accounts.ErrUserExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := s.AddUser("bob", "short", false); !errors.Is(err, accounts.ErrWeakPassword) {
		t.Fatalf("short password: %v", err)
	}
	if err := s.SetPassword("nobody", "long-enough"); !errors.Is(err, accounts.ErrUnknownUser) {
		t.Fatalf("passwd unknown: %v", err)
	}
	if err := s.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "p1", secret); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("token of deleted user: %v", err)
	}
}

func TestVerifyRejectsMalformedHashes(t *testing.T) {
	t.Parallel()
	s := newService(t)
	for _, h := range []string{"", "plain", "$argon2i$v=19$m=1024,t=1,p=1$AAAA$AAAA", "$argon2id$v=18$m=1024,t=1,p=1$AAAA$AAAA",
		"$argon2id$v=19$m=x,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=1024,t=1,p=1$!!$AAAA", "$argon2id$v=19$m=1024,t=0,p=1$AAAA$AAAA"} {
		if _, err := accounts.Verify(s, h, "pw"); !errors.Is(err, accounts.ErrBadHash) {
			t.Errorf("verify(%q) = %v, want accounts.ErrBadHash", h, err)
		}
	}
}

// TestTokenCacheInvalidation: cached token logins see every change made
// through the service at once.
func TestTokenCacheInvalidation(t *testing.T) {
	t.Parallel()
	s := newService(t)
	if err := s.AddUser("alice", "correct-horse", false); err != nil {
		t.Fatal(err)
	}
	secret, _, err := s.CreateToken("alice", "p1")
	if err != nil {
		t.Fatal(err)
	}
	ok := func(what string) {
		t.Helper()
		if _, err := s.Authenticate("alice", "p1", secret); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	ok("first login")
	ok("cached login")
	if err := s.SetAdmin("alice", true); err != nil {
		t.Fatal(err)
	}
	if id, err := s.Authenticate("alice", "p1", secret); err != nil || !id.Admin {
		t.Fatalf("admin change not seen: %+v %v", id, err)
	}
	if err := s.SetDisabled("alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "p1", secret); !errors.Is(err, accounts.ErrDisabled) {
		t.Fatalf("disable not seen: %v", err)
	}
	if err := s.SetDisabled("alice", false); err != nil {
		t.Fatal(err)
	}
	ok("enabled again")
	if _, err := s.Authenticate("alice", "p2", secret); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("cached token accepted for another device: %v", err)
	}
	if _, err := s.RevokeTokens("alice", "p1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "p1", secret); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("revoked token accepted: %v", err)
	}
	secret2, _, err := s.CreateToken("alice", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "p1", secret2); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "p1", secret2); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("token of deleted user accepted: %v", err)
	}
}

// TestChangesOfAnotherNode: two Services over one store, as two cluster
// nodes over the shared one. A change made through one is not seen by the
// other's cache until Changed (the cluster's notice) or Flush; OnChange
// reports each change, and a password change as such.
func TestChangesOfAnotherNode(t *testing.T) {
	t.Parallel()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := accounts.Params{Time: 1, Memory: 1 << 10, Threads: 1}
	n1, n2 := accounts.New(st, p, 2), accounts.New(st, p, 2)
	type change struct {
		uid string
		pw  bool
	}
	var told []change
	n1.OnChange = func(uid string, pw bool) { told = append(told, change{uid, pw}) }
	var kicked []string
	n2.OnPasswordChange(func(uid string) { kicked = append(kicked, uid) })

	if err := n1.AddUser("alice", "correct-horse", false); err != nil {
		t.Fatal(err)
	}
	secret, _, err := n1.CreateToken("alice", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Authenticate("alice", "p1", secret); err != nil {
		t.Fatal(err) // cached on n2 now
	}
	if _, err := n1.RevokeTokens("alice", "p1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Authenticate("alice", "p1", secret); err != nil {
		t.Fatalf("n2's cache should still hold the token until told: %v", err)
	}
	n2.Changed("alice", false)
	if _, err := n2.Authenticate("alice", "p1", secret); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("revoked token after Changed: %v", err)
	}

	secret, _, err = n1.CreateToken("alice", "p2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Authenticate("alice", "p2", secret); err != nil {
		t.Fatal(err)
	}
	if err := n1.SetDisabled("alice", true); err != nil {
		t.Fatal(err)
	}
	n2.Flush() // as if the notice was lost
	if _, err := n2.Authenticate("alice", "p2", secret); !errors.Is(err, accounts.ErrDisabled) {
		t.Fatalf("disabled user after Flush: %v", err)
	}

	if err := n1.SetPassword("alice", "battery-staple"); err != nil {
		t.Fatal(err)
	}
	n2.Changed("alice", true)
	if len(kicked) != 1 || kicked[0] != "alice" {
		t.Fatalf("n2's password listeners: %v", kicked)
	}
	want := []change{{"alice", false}, {"alice", false}, {"alice", false}, {"alice", true}}
	if len(told) != len(want) {
		t.Fatalf("OnChange: %v, want %v", told, want)
	}
	for i := range want {
		if told[i] != want[i] {
			t.Fatalf("OnChange: %v, want %v", told, want)
		}
	}
}

package accounts

import (
	"errors"
	"strings"
	"testing"
)

// TestLoginWorkDoesNotDependOnUser: a password login runs the KDF exactly
// once for a known user (right or wrong password), a disabled user and an
// unknown user, so its duration does not tell whether the uid exists. On
// the old code an unknown uid returned before the KDF (0 runs).
func TestLoginWorkDoesNotDependOnUser(t *testing.T) {
	t.Parallel()
	s := newService(t)
	for _, u := range []string{"alice", "carol"} {
		if err := s.AddUser(u, "correct-horse", false); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetDisabled("carol", true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, uid, pass string
		want            error
	}{
		{"known right", "alice", "correct-horse", nil},
		{"known wrong", "alice", "wrong-horse", ErrBadCredentials},
		{"disabled right", "carol", "correct-horse", ErrDisabled},
		{"disabled wrong", "carol", "wrong-horse", ErrBadCredentials},
		{"unknown", "nobody", "correct-horse", ErrBadCredentials},
		{"unknown again", "nobody2", "wrong-horse", ErrBadCredentials},
		{"junk token on unknown", "nobody", "tt_junk", ErrBadCredentials},
	} {
		_, err := s.dummyHash() // the one-off dummy hash is not a login's work
		if err != nil {
			t.Fatal(err)
		}
		before := s.verifies.Load()
		_, err = s.Authenticate(tc.uid, "p1", tc.pass)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if n := s.verifies.Load() - before; n != 1 {
			t.Errorf("%s: %d KDF runs, want 1", tc.name, n)
		}
	}
}

// TestJunkTokenIsAPassword: a secret with the token prefix that is not
// shaped like a token is checked as a password (it costs the KDF, so
// sending them is not a cheap way to add failures); a well-formed one is
// checked as a token and fails with ErrBadToken without the KDF. On the
// old code "tt_junk" took the token path and cost nothing.
func TestJunkTokenIsAPassword(t *testing.T) {
	t.Parallel()
	s := newService(t)
	if err := s.AddUser("alice", "correct-horse", false); err != nil {
		t.Fatal(err)
	}
	secret, _, err := s.CreateToken("alice", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !IsToken(secret) {
		t.Fatalf("a fresh token %q is not shaped like one", secret)
	}
	forged := TokenPrefix + strings.Repeat("A", len(secret)-len(TokenPrefix))
	for _, tc := range []struct {
		secret string
		token  bool
	}{
		{"tt_junk", false},
		{"tt_" + strings.Repeat("x", 100), false},
		{secret[:len(secret)-1], false},
		{secret + "A", false},
		{secret[:len(secret)-1] + "!", false},
		{forged, true},
	} {
		if got := IsToken(tc.secret); got != tc.token {
			t.Errorf("IsToken(%q) = %v", tc.secret, got)
		}
		before := s.verifies.Load()
		_, err := s.Authenticate("alice", "p1", tc.secret)
		if !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%q: %v", tc.secret, err)
		}
		if got := errors.Is(err, ErrBadToken); got != tc.token {
			t.Errorf("%q: ErrBadToken %v, want %v", tc.secret, got, tc.token)
		}
		if n := s.verifies.Load() - before; (n == 0) != tc.token {
			t.Errorf("%q: %d KDF runs", tc.secret, n)
		}
	}
}

// TestSetPasswordNotifies: OnPasswordChange functions run after a
// committed change, and not for a refused one.
func TestSetPasswordNotifies(t *testing.T) {
	t.Parallel()
	s := newService(t)
	var got []string
	s.OnPasswordChange(func(uid string) { got = append(got, uid) })
	if err := s.AddUser("alice", "correct-horse", false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("alice", "short"); !errors.Is(err, ErrWeakPassword) {
		t.Fatal(err)
	}
	if err := s.SetPassword("nobody", "long-enough"); !errors.Is(err, ErrUnknownUser) {
		t.Fatal(err)
	}
	if err := s.SetPassword("alice", "battery-staple"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "alice" {
		t.Fatalf("notified %v", got)
	}
}

// FuzzIsToken: never panics, and whatever it accepts has the token
// length and prefix.
func FuzzIsToken(f *testing.F) {
	f.Add("tt_junk")
	f.Add(TokenPrefix + strings.Repeat("A", 43))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if IsToken(s) && (len(s) != tokenLen || !strings.HasPrefix(s, TokenPrefix)) {
			t.Fatalf("accepted %q", s)
		}
	})
}

// BenchmarkLogin compares a password login for a known and an unknown
// uid; both cost one KDF run, so the two figures should be close.
func BenchmarkLogin(b *testing.B) {
	s := newService(b)
	if err := s.AddUser("alice", "correct-horse", false); err != nil {
		b.Fatal(err)
	}
	for _, uid := range []string{"alice", "nobody"} {
		b.Run(uid, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Authenticate(uid, "p1", "wrong-horse"); !errors.Is(err, ErrBadCredentials) {
					b.Fatal(err)
				}
			}
		})
	}
}

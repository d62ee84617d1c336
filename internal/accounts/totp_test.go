package accounts_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/tern-im/tern/internal/accounts"
)

// TestTOTP: enabling two-factor login shows an otpauth:// URI and ten
// recovery codes; the password then fails as a device password
// (ErrOTPRequired) while tokens keep working; LoginWithOTP needs a code:
// a computed TOTP code works once (no replay), a recovery code works
// once, wrong codes lock OTP logins after five; disabling restores the
// password.
func TestTOTP(t *testing.T) {
	t.Parallel()
	s := newService(t)
	if err := s.AddUser("alice", "correct-horse", false); err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.CreateToken("alice", "p1")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := s.EnableTOTP("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(setup.URI, "otpauth://totp/Tern:alice?") || !strings.Contains(setup.URI, "secret="+setup.Secret) || len(setup.Recovery) != 10 {
		t.Fatalf("setup %+v", setup)
	}
	u, err := s.User("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range setup.Recovery {
		for _, h := range u.Recovery {
			if strings.Contains(h, c) || h == c {
				t.Fatal("a recovery code is stored in clear")
			}
		}
	}
	if _, err := s.EnableTOTP("alice"); !errors.Is(err, accounts.ErrTOTPOn) {
		t.Fatalf("enable twice: %v", err)
	}
	if _, err := s.Authenticate("alice", "p2", "correct-horse"); !errors.Is(err, accounts.ErrOTPRequired) {
		t.Fatalf("password of a TOTP user: %v", err)
	}
	if _, err := s.Authenticate("alice", "p2", "wrong-horse"); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("wrong password of a TOTP user: %v", err)
	}
	if id, err := s.Authenticate("alice", "p1", tok); err != nil || id.UID != "alice" {
		t.Fatalf("token of a TOTP user: %v", err)
	}
	// 5 s into a 30 s step, so that the codes of the steps below (now−30 s,
	// now+30 s used at now+61 s) are the previous and next step wherever
	// the wall clock is (unaligned, now+61 s could be two steps on).
	now := time.Now().Truncate(30 * time.Second).Add(5 * time.Second)
	if _, _, err := s.LoginWithOTP("alice", "correct-horse", "", "web1", now); !errors.Is(err, accounts.ErrOTPRequired) {
		t.Fatalf("no otp: %v", err)
	}
	if _, _, err := s.LoginWithOTP("alice", "wrong-horse", "123456", "web1", now); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Fatalf("wrong password with otp: %v", err)
	}
	code, err := totp.GenerateCode(setup.Secret, now)
	if err != nil {
		t.Fatal(err)
	}
	secret, tk, err := s.LoginWithOTP("alice", "correct-horse", code, "web1", now)
	if err != nil || tk.DID != "web1" {
		t.Fatalf("otp login: %+v %v", tk, err)
	}
	if id, err := s.Authenticate("alice", "web1", secret); err != nil || id.DID != "web1" {
		t.Fatalf("the issued token: %v", err)
	}
	if _, _, err := s.LoginWithOTP("alice", "correct-horse", code, "web2", now); !errors.Is(err, accounts.ErrBadOTP) {
		t.Fatalf("replayed code: %v", err)
	}
	// A code of the previous step is older than the one used: refused.
	prev, _ := totp.GenerateCode(setup.Secret, now.Add(-30*time.Second))
	if _, _, err := s.LoginWithOTP("alice", "correct-horse", prev, "web2", now); !errors.Is(err, accounts.ErrBadOTP) {
		t.Fatalf("older code: %v", err)
	}
	rc := strings.ToUpper(setup.Recovery[3]) // case and dashes do not matter
	if _, _, err := s.LoginWithOTP("alice", "correct-horse", rc, "web3", now); err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	if _, _, err := s.LoginWithOTP("alice", "correct-horse", rc, "web4", now); !errors.Is(err, accounts.ErrBadOTP) {
		t.Fatalf("recovery code twice: %v", err)
	}
	if u, _ := s.User("alice"); len(u.Recovery) != 9 {
		t.Fatalf("%d recovery codes left", len(u.Recovery))
	}
	// Wrong codes: after five in a row (the reused recovery code was the
	// first since the last success), even a right one waits a minute.
	for range 4 {
		if _, _, err := s.LoginWithOTP("alice", "correct-horse", "000000", "web5", now); !errors.Is(err, accounts.ErrBadOTP) {
			t.Fatalf("wrong code: %v", err)
		}
	}
	next, _ := totp.GenerateCode(setup.Secret, now.Add(30*time.Second))
	if _, _, err := s.LoginWithOTP("alice", "correct-horse", next, "web6", now); !errors.Is(err, accounts.ErrOTPLocked) {
		t.Fatalf("after wrong codes: %v", err)
	}
	if _, _, err := s.LoginWithOTP("alice", "correct-horse", next, "web6", now.Add(61*time.Second)); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	if err := s.DisableTOTP("alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableTOTP("alice"); !errors.Is(err, accounts.ErrTOTPOff) {
		t.Fatalf("disable twice: %v", err)
	}
	if _, err := s.Authenticate("alice", "p2", "correct-horse"); err != nil {
		t.Fatalf("password after disable: %v", err)
	}
	for _, code := range []string{"", "123456"} { // a code is ignored without TOTP
		if _, _, err := s.LoginWithOTP("alice", "correct-horse", code, "web7", now); err != nil {
			t.Fatalf("login without TOTP (code %q): %v", code, err)
		}
	}
	if _, err := s.EnableTOTP("nobody"); !errors.Is(err, accounts.ErrUnknownUser) {
		t.Fatalf("enable unknown: %v", err)
	}
}

package accounts

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Two-factor errors.
var (
	// ErrOTPRequired: the password is right, but the user has two-factor
	// login: it no longer works as an MQTT password, and LoginWithOTP
	// needs a code.
	ErrOTPRequired = errors.New("accounts: otp required")
	// ErrBadOTP: the code is wrong, used already, or not a recovery code.
	ErrBadOTP = errors.New("accounts: wrong or used otp")
	// ErrOTPLocked: too many wrong codes for the user lately.
	ErrOTPLocked = errors.New("accounts: too many wrong otp codes, try later")
	// ErrTOTPOn and ErrTOTPOff: enabling twice, disabling what is off.
	ErrTOTPOn  = errors.New("accounts: two-factor login is already on (disable it first to start over)")
	ErrTOTPOff = errors.New("accounts: two-factor login is off")
)

// Two-factor parameters: RFC 6238 defaults (SHA-1, 6 digits, 30 s), which
// every authenticator app supports; one step of clock skew either way.
const (
	totpPeriod    = 30
	totpSkew      = 1
	recoveryCodes = 10
	// otpFailures wrong codes lock a user's OTP logins for otpLockout.
	otpFailures = 5
	otpLockout  = time.Minute
	// Issuer names Tern in authenticator apps.
	Issuer = "Tern"
)

// TOTPSetup is what enabling two-factor login shows once: the otpauth://
// URI (for a QR code), the secret, and the recovery codes.
type TOTPSetup struct {
	URI      string   `json:"uri"`
	Secret   string   `json:"secret"`
	Recovery []string `json:"recovery"`
}

// EnableTOTP turns on two-factor login for uid: a new secret and
// recovery codes, stored (the codes only as SHA-256). The setup is shown
// once; password sessions of uid are ended as after a password change.
func (s *Service) EnableTOTP(uid string) (TOTPSetup, error) {
	if err := topics.CheckUID(uid); err != nil {
		return TOTPSetup{}, ErrUnknownUser
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: Issuer, AccountName: uid, Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return TOTPSetup{}, err
	}
	setup := TOTPSetup{URI: key.URL(), Secret: key.Secret()}
	hashes := make([]string, 0, recoveryCodes)
	for range recoveryCodes {
		c, err := recoveryCode()
		if err != nil {
			return TOTPSetup{}, err
		}
		setup.Recovery = append(setup.Recovery, c)
		hashes = append(hashes, hashCode(c))
	}
	err = s.updateErr(uid, func(u *User) error {
		if u.TOTP != "" {
			return ErrTOTPOn
		}
		u.TOTP, u.TOTPStep, u.Recovery = key.Secret(), 0, hashes
		return nil
	})
	if err != nil {
		return TOTPSetup{}, err
	}
	for _, fn := range s.onPassword {
		fn(uid)
	}
	return setup, nil
}

// DisableTOTP turns two-factor login off: the password works again.
func (s *Service) DisableTOTP(uid string) error {
	return s.updateErr(uid, func(u *User) error {
		if u.TOTP == "" {
			return ErrTOTPOff
		}
		u.TOTP, u.TOTPStep, u.Recovery = "", 0, nil
		return nil
	})
}

// updateErr is update with a change that may refuse.
func (s *Service) updateErr(uid string, fn func(*User) error) error {
	defer s.changed(uid)
	err := s.st.UpdateUser(uid, fn)
	if errors.Is(err, im.ErrNotFound) {
		return ErrUnknownUser
	}
	return err
}

// recoveryCode is ten random base32 characters as "xxxxx-xxxxx".
func recoveryCode() (string, error) {
	var b [7]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	c := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))[:10]
	return c[:5] + "-" + c[5:], nil
}

// hashCode is the stored form of a recovery code: SHA-256 of its
// normalised text (lowercase, no dashes or spaces).
func hashCode(c string) string {
	c = strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(c))
	s := sha256.Sum256([]byte(c))
	return hex.EncodeToString(s[:])
}

// otpThrottle counts wrong codes per user.
type otpThrottle struct {
	mu sync.Mutex
	m  map[string]*otpFails
}

type otpFails struct {
	n     int
	until time.Time
}

func (t *otpThrottle) locked(uid string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[uid]
	return f != nil && now.Before(f.until)
}

func (t *otpThrottle) fail(uid string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= maxCached {
		t.m = map[string]*otpFails{}
	}
	f := t.m[uid]
	if f == nil {
		f = &otpFails{}
		t.m[uid] = f
	}
	f.n++
	if f.n >= otpFailures {
		f.n, f.until = 0, now.Add(otpLockout)
	}
}

func (t *otpThrottle) ok(uid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, uid)
}

// LoginWithOTP is the credential check of POST /v1/login: the password,
// then for a user with two-factor login a current TOTP code (each 30 s
// step accepted once) or an unused recovery code (used up), then a new
// device token for did. Without two-factor login code is ignored. Wrong
// codes are counted per user: after 5, OTP logins wait a minute
// (ErrOTPLocked). The caller throttles wrong passwords as the auth hook
// does for MQTT.
func (s *Service) LoginWithOTP(uid, password, code, did string, now time.Time) (secret string, t Token, err error) {
	u, err := s.login(uid)
	known := err == nil
	hash := u.Hash
	if errors.Is(err, ErrBadCredentials) {
		hash, err = s.dummyHash()
	}
	if err != nil {
		return "", t, err
	}
	ok, err := s.verify(hash, password)
	if err != nil {
		return "", t, err
	}
	if !ok || !known {
		return "", t, ErrBadCredentials
	}
	if u.Disabled {
		return "", t, ErrDisabled
	}
	if u.TOTP != "" {
		if code == "" {
			return "", t, ErrOTPRequired
		}
		if s.otp.locked(uid, now) {
			return "", t, ErrOTPLocked
		}
		if err := s.checkOTP(uid, code, now); err != nil {
			if errors.Is(err, ErrBadOTP) {
				s.otp.fail(uid, now)
			}
			return "", t, err
		}
		s.otp.ok(uid)
	}
	return s.CreateToken(uid, did)
}

// checkOTP accepts a TOTP code of the current step (± skew) newer than
// the last accepted one, or a recovery code, and records its use.
func (s *Service) checkOTP(uid, code string, now time.Time) error {
	return s.updateErr(uid, func(u *User) error {
		if u.TOTP == "" {
			return ErrTOTPOff
		}
		code = strings.TrimSpace(code)
		if len(code) == 6 {
			step := now.Unix() / totpPeriod
			for d := int64(-totpSkew); d <= totpSkew; d++ {
				want, err := totp.GenerateCodeCustom(u.TOTP, time.Unix((step+d)*totpPeriod, 0),
					totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
				if err != nil {
					return fmt.Errorf("accounts: totp: %w", err)
				}
				if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
					if step+d <= u.TOTPStep {
						return ErrBadOTP // replayed
					}
					u.TOTPStep = step + d
					return nil
				}
			}
			return ErrBadOTP
		}
		h := hashCode(code)
		for i, r := range u.Recovery {
			if subtle.ConstantTimeCompare([]byte(r), []byte(h)) == 1 {
				u.Recovery = append(u.Recovery[:i:i], u.Recovery[i+1:]...)
				return nil
			}
		}
		return ErrBadOTP
	})
}

// Package accounts manages users and device tokens over the store:
// argon2id password hashes, device tokens kept only as SHA-256, and the
// credential check used by the auth hook and the admin API.
package accounts

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/crypto/argon2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Errors returned by the service.
var (
	ErrBadCredentials = errors.New("accounts: bad user name or password")
	ErrDisabled       = errors.New("accounts: user disabled")
	ErrUnknownUser    = errors.New("accounts: unknown user")
	ErrUserExists     = errors.New("accounts: user exists")
	ErrWeakPassword   = errors.New("accounts: password must be 8 to 1024 bytes")
	ErrBadHash        = errors.New("accounts: unreadable password hash")
	// ErrBadToken is the ErrBadCredentials of a well-formed device token
	// that is unknown, revoked or bound to another device.
	ErrBadToken = fmt.Errorf("accounts: unknown device token: %w", ErrBadCredentials)
)

// TokenPrefix starts every device token, so a token is never mistaken for
// a password (and never pays the password KDF).
const TokenPrefix = "tt_"

// tokenLen is the length of a device token: the prefix and 32 random
// bytes in unpadded base64url.
var tokenLen = len(TokenPrefix) + base64.RawURLEncoding.EncodedLen(32)

// IsToken reports whether secret is shaped like a device token (the
// prefix and 32 bytes of unpadded base64url). Only such secrets are checked
// as tokens; anything else, "tt_junk" included, is checked as a password
// and pays the KDF.
func IsToken(secret string) bool {
	if len(secret) != tokenLen || !strings.HasPrefix(secret, TokenPrefix) {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(secret[len(TokenPrefix):])
	return err == nil
}

// Params are the argon2id parameters for new hashes.
type Params struct {
	Time    uint32
	Memory  uint32 // KiB
	Threads uint8
}

// Service is the account API. It is safe for concurrent use.
type Service struct {
	// OnDelete, if set, is called after DeleteUser with the groups the
	// user left and the users whose contacts or blocks named them (the
	// broker drops its membership caches). Set it before use.
	OnDelete func(uid string, p Purged)
	// OnChange, if set before use, is told of every change this Service
	// commits to an account or its tokens (password: a new password, after
	// the OnPasswordChange listeners ran). A cluster node tells the other
	// nodes, which call Changed: each node caches token logins.
	OnChange func(uid string, password bool)

	st     Store
	params Params
	// kdf bounds concurrent argon2 runs: each costs Params.Memory of RAM.
	kdf chan struct{}

	// The cache holds what a token login needs, so a reconnect storm of
	// token devices costs map lookups instead of two store reads each.
	// Every change of accounts and tokens goes through this Service (the
	// store's directory lock keeps the offline CLI out while a broker
	// runs), which drops the entries it affects.
	mu     sync.RWMutex
	tokens map[[sha256.Size]byte]Token // by hash of the secret
	users  map[string]User             // hash field cleared
	// gen counts invalidations: an authentication that read the store
	// before a concurrent change committed must not cache what it read.
	gen uint64

	// dummy is the hash an unknown user's password is checked against,
	// so that a login for an unknown uid costs what one for a known uid
	// costs (the KDF) and its timing does not tell whether the uid exists.
	dummyOnce sync.Once
	dummy     string
	dummyErr  error
	// verifies counts password KDF runs at login (tests read it).
	verifies atomic.Uint64

	// onPassword runs after each committed password change.
	onPassword []func(uid string)
	// otp counts wrong two-factor codes (totp.go).
	otp otpThrottle
}

// maxCached bounds each cache; past it a cache starts over.
const maxCached = 200_000

// New returns a Service over st. kdfSlots bounds concurrent password
// hashing (use the core count).
func New(st Store, p Params, kdfSlots int) *Service {
	if kdfSlots < 1 {
		kdfSlots = 1
	}
	return &Service{st: st, params: p, kdf: make(chan struct{}, kdfSlots),
		tokens: map[[sha256.Size]byte]Token{}, users: map[string]User{}}
}

// AddUser creates a user with a password.
func (s *Service) AddUser(uid, password string, admin bool) error {
	if err := topics.CheckUID(uid); err != nil {
		return fmt.Errorf("user %q: %w", uid, err)
	}
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	err = s.st.PutUser(User{UID: uid, Hash: h, Admin: admin, Created: time.Now().UTC()})
	if errors.Is(err, im.ErrExists) {
		return ErrUserExists
	}
	return err
}

// SetPassword replaces a user's password, then calls the functions given
// to OnPasswordChange (the auth hook disconnects the sessions that logged
// in with the old password). Device tokens stay valid.
func (s *Service) SetPassword(uid, password string) error {
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	if err := s.update(uid, func(u *User) { u.Hash = h }); err != nil {
		return err
	}
	for _, fn := range s.onPassword {
		fn(uid)
	}
	if s.OnChange != nil {
		s.OnChange(uid, true)
	}
	return nil
}

// Changed drops what the cache holds about uid and, after a password
// change, runs the OnPasswordChange listeners: for a change another node
// committed (OnChange there).
func (s *Service) Changed(uid string, password bool) {
	s.forget(uid)
	if password {
		for _, fn := range s.onPassword {
			fn(uid)
		}
	}
}

// Flush empties the cache: a cluster node does so now and then, so that
// a change whose notice it missed is not cached for long.
func (s *Service) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	clear(s.users)
	clear(s.tokens)
}

// changed drops what the cache holds about uid and tells OnChange.
func (s *Service) changed(uid string) {
	s.forget(uid)
	if s.OnChange != nil {
		s.OnChange(uid, false)
	}
}

// OnPasswordChange registers fn to run, on the changing goroutine, after
// every committed password change. Register before the Service is used.
func (s *Service) OnPasswordChange(fn func(uid string)) {
	s.onPassword = append(s.onPassword, fn)
}

// SetDisabled disables or enables a user.
func (s *Service) SetDisabled(uid string, disabled bool) error {
	return s.update(uid, func(u *User) { u.Disabled = disabled })
}

// SetAdmin grants or removes the admin role.
func (s *Service) SetAdmin(uid string, admin bool) error {
	return s.update(uid, func(u *User) { u.Admin = admin })
}

func (s *Service) update(uid string, fn func(*User)) error {
	defer s.changed(uid)
	err := s.st.UpdateUser(uid, func(u *User) error { fn(u); return nil })
	if errors.Is(err, im.ErrNotFound) {
		return ErrUnknownUser
	}
	return err
}

// DeleteUser deletes a user, its tokens, memberships, contacts, blocks and
// stream (Store.DeleteUser), then tells OnDelete, if set, which groups and
// users changed.
func (s *Service) DeleteUser(uid string) error {
	defer s.changed(uid)
	p, err := s.st.DeleteUser(uid)
	if errors.Is(err, im.ErrNotFound) {
		return ErrUnknownUser
	}
	if s.OnDelete != nil && (err == nil || len(p.Groups)+len(p.Users) > 0) {
		s.OnDelete(uid, p)
	}
	return err
}

// Users lists all accounts.
func (s *Service) Users() ([]User, error) { return s.st.Users() }

// User returns one account.
func (s *Service) User(uid string) (User, error) {
	u, err := s.st.User(uid)
	if errors.Is(err, im.ErrNotFound) {
		return u, ErrUnknownUser
	}
	return u, err
}

// CreateToken issues a new device token for (uid, did) and returns the
// secret, which is shown once and stored only as its SHA-256.
func (s *Service) CreateToken(uid, did string) (secret string, t Token, err error) {
	if err := topics.CheckDID(did); err != nil {
		return "", t, fmt.Errorf("device %q: %w", did, err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", t, err
	}
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	t = Token{ID: ulid.Make().String(), UID: uid, DID: did, Created: time.Now().UTC()}
	if err := s.st.PutToken(sum[:], t); err != nil {
		if errors.Is(err, im.ErrNotFound) {
			return "", t, ErrUnknownUser
		}
		return "", t, err
	}
	return secret, t, nil
}

// Tokens lists a user's tokens.
func (s *Service) Tokens(uid string) ([]Token, error) {
	if _, err := s.User(uid); err != nil {
		return nil, err
	}
	return s.st.Tokens(uid)
}

// RevokeTokens revokes a device's tokens (all devices if did is empty;
// just one if id is set) and returns how many were revoked.
func (s *Service) RevokeTokens(uid, did, id string) (int, error) {
	if _, err := s.User(uid); err != nil {
		return 0, err
	}
	defer s.changed(uid)
	return s.st.RevokeTokens(uid, did, id)
}

// Authenticate checks a secret for device (uid, did): a device token bound
// to that pair (when IsToken(secret)), or else the account password. It
// returns the identity on success and ErrBadCredentials (ErrBadToken for
// a token), ErrDisabled, or ErrOTPRequired (the right password of a user
// with two-factor login) otherwise. A password login runs the KDF once
// whether the user exists, is disabled or not, so its duration does not
// tell which; ErrDisabled is returned only with the right password.
func (s *Service) Authenticate(uid, did, secret string) (topics.Identity, error) {
	if IsToken(secret) {
		return s.authenticateToken(uid, did, secret)
	}
	u, err := s.login(uid)
	known := err == nil
	hash := u.Hash
	if errors.Is(err, ErrBadCredentials) { // unknown: same work, never a success
		hash, err = s.dummyHash()
	}
	if err != nil {
		return topics.Identity{}, err
	}
	ok, err := s.verify(hash, secret)
	if err != nil {
		return topics.Identity{}, err
	}
	if !ok || !known {
		return topics.Identity{}, ErrBadCredentials
	}
	id, err := identity(u, did)
	if err == nil && u.TOTP != "" {
		// Two-factor login: the password alone logs no device in.
		return topics.Identity{}, ErrOTPRequired
	}
	return id, err
}

// dummyHash returns a hash of a random password with the parameters of
// new hashes, made on first use.
func (s *Service) dummyHash() (string, error) {
	s.dummyOnce.Do(func() {
		var raw [24]byte
		if _, err := rand.Read(raw[:]); err != nil {
			s.dummyErr = err
			return
		}
		s.dummy, s.dummyErr = s.hash(base64.RawStdEncoding.EncodeToString(raw[:]))
	})
	return s.dummy, s.dummyErr
}

// login reads the account a login names; an unknown user is reported as
// bad credentials, like a wrong secret.
func (s *Service) login(uid string) (User, error) {
	u, err := s.st.User(uid)
	if errors.Is(err, im.ErrNotFound) {
		return u, ErrBadCredentials
	}
	return u, err
}

// identity is who a login of device did into account u is, unless the
// account is disabled.
func identity(u User, did string) (topics.Identity, error) {
	if u.Disabled {
		return topics.Identity{}, ErrDisabled
	}
	return topics.Identity{UID: u.UID, DID: did, Admin: u.Admin}, nil
}

// authenticateToken checks a device token, from the cache when it can.
func (s *Service) authenticateToken(uid, did, secret string) (topics.Identity, error) {
	sum := sha256.Sum256([]byte(secret))
	s.mu.RLock()
	t, tok := s.tokens[sum]
	u, usr := s.users[uid]
	gen := s.gen
	s.mu.RUnlock()
	if !tok {
		var err error
		t, err = s.st.TokenByHash(sum[:])
		if errors.Is(err, im.ErrNotFound) {
			return topics.Identity{}, ErrBadToken
		}
		if err != nil {
			return topics.Identity{}, err
		}
	}
	if t.UID != uid || t.DID != did {
		return topics.Identity{}, ErrBadToken
	}
	if !usr {
		var err error
		if u, err = s.login(uid); err != nil {
			return topics.Identity{}, err
		}
		u.Hash = ""
	}
	if !tok || !usr {
		s.mu.Lock()
		if s.gen == gen { // nothing changed since the reads
			if len(s.tokens) >= maxCached || len(s.users) >= maxCached {
				clear(s.tokens)
				clear(s.users)
			}
			s.tokens[sum] = t
			s.users[uid] = u
		}
		s.mu.Unlock()
	}
	return identity(u, did)
}

// forget drops what the cache holds about uid and its tokens.
func (s *Service) forget(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	delete(s.users, uid)
	for h, t := range s.tokens {
		if t.UID == uid {
			delete(s.tokens, h)
		}
	}
}

// hash returns a PHC-encoded argon2id hash of password.
func (s *Service) hash(password string) (string, error) {
	if len(password) < 8 || len(password) > 1024 {
		return "", ErrWeakPassword
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	p := s.params
	s.kdf <- struct{}{}
	sum := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	<-s.kdf
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// verify checks password against a PHC-encoded argon2id hash, using the
// parameters recorded in the hash.
func (s *Service) verify(phc, password string) (bool, error) {
	h, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	if len(password) > 1024 {
		return false, nil
	}
	s.verifies.Add(1)
	s.kdf <- struct{}{}
	got := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.sum)))
	<-s.kdf
	return subtle.ConstantTimeCompare(got, h.sum) == 1, nil
}

// phc is a decoded argon2id hash string.
type phc struct {
	time, memory uint32
	threads      uint8
	salt, sum    []byte
}

// parsePHC decodes "$argon2id$v=19$m=…,t=…,p=…$salt$sum", refusing
// parameters no sane hash has (they would cost unbounded memory or time).
func parsePHC(s string) (phc, error) {
	var (
		h               phc
		version, mem, t int
		threads         int
	)
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, ErrBadHash
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return h, ErrBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &threads); err != nil ||
		mem < 8 || mem > 4<<20 || t < 1 || t > 64 || threads < 1 || threads > 64 {
		return h, ErrBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	sum, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(sum) < 16 || len(sum) > 64 || len(salt) < 8 {
		return h, ErrBadHash
	}
	return phc{time: uint32(t), memory: uint32(mem), threads: uint8(threads), salt: salt, sum: sum}, nil
}

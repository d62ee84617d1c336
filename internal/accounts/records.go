package accounts

import "time"

// User is an account record.
type User struct {
	UID      string    `json:"uid"`
	Hash     string    `json:"hash"` // PHC-encoded argon2id hash
	Admin    bool      `json:"admin,omitempty"`
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created"`
	// TOTP is the base32 secret of two-factor login (RFC 6238), empty
	// when it is off. With it the password no longer logs a device in
	// over MQTT; LoginWithOTP (POST /v1/login) issues tokens instead.
	TOTP string `json:"totp,omitempty"`
	// TOTPStep is the last 30-second step a code was accepted for: a
	// code is never accepted twice.
	TOTPStep int64 `json:"totp_step,omitempty"`
	// Recovery are the SHA-256 (hex) of the unused recovery codes.
	Recovery []string `json:"recovery,omitempty"`
}

// Token is a device token record, stored under the SHA-256 of the secret.
type Token struct {
	ID      string    `json:"id"`
	UID     string    `json:"uid"`
	DID     string    `json:"did"`
	Created time.Time `json:"created"`
}

// Store is what the Service needs from storage; internal/store implements
// it over Badger. Missing records are im.ErrNotFound, a taken uid
// im.ErrExists.
type Store interface {
	PutUser(u User) error
	// UpdateUser applies fn to an existing user record atomically.
	UpdateUser(uid string, fn func(*User) error) error
	User(uid string) (User, error)
	// Users lists every user in uid order.
	Users() ([]User, error)
	// DeleteUser deletes a user, its tokens, memberships, contacts,
	// blocks and stream, and reports which groups and users changed.
	DeleteUser(uid string) (Purged, error)
	// PutToken stores a token under the SHA-256 of its secret.
	PutToken(hash []byte, t Token) error
	TokenByHash(hash []byte) (Token, error)
	Tokens(uid string) ([]Token, error)
	// RevokeTokens deletes uid's tokens: of device did (all when empty),
	// only the one with id when id is set; it returns how many.
	RevokeTokens(uid, did, id string) (int, error)
}

// Purged is what DeleteUser changed besides the account, for the callers'
// caches: the groups the user left, and the users whose contacts, blocks
// or groups included them.
type Purged struct {
	Groups []string
	Users  []string
}

package topics

import (
	"errors"
	"strings"
)

// Errors returned by the identifier validators.
var (
	ErrEmptyID    = errors.New("topics: empty id")
	ErrIDTooLong  = errors.New("topics: id too long")
	ErrIDChars    = errors.New("topics: id has characters outside [a-z0-9_-] or does not start with [a-z0-9]")
	ErrReservedID = errors.New("topics: id is reserved")
	ErrClientID   = errors.New("topics: client id must be {uid}.{did}")
)

const (
	maxUIDLen = 32
	maxDIDLen = 16
)

// reserved user and group ids (PROTOCOL §2).
var reserved = map[string]bool{"all": true, "me": true, "sys": true, "admin": true, "srv": true}

// checkID validates s against ^[a-z0-9][a-z0-9_-]{0,max-1}$.
func checkID(s string, max int) error {
	if s == "" {
		return ErrEmptyID
	}
	if len(s) > max {
		return ErrIDTooLong
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return ErrIDChars
		}
	}
	return nil
}

// CheckUID reports why s is not a valid user id, or nil.
func CheckUID(s string) error {
	if err := checkID(s, maxUIDLen); err != nil {
		return err
	}
	if reserved[s] {
		return ErrReservedID
	}
	return nil
}

// CheckDID reports why s is not a valid device id, or nil.
func CheckDID(s string) error { return checkID(s, maxDIDLen) }

// CheckGID reports why s is not a valid group id, or nil. Group ids share
// the user id rules, reserved names included.
func CheckGID(s string) error { return CheckUID(s) }

// ClientID returns the MQTT ClientID of a device: {uid}.{did}.
func ClientID(uid, did string) string { return uid + "." + did }

// ParseClientID splits and validates an MQTT ClientID of the form {uid}.{did}.
func ParseClientID(id string) (uid, did string, err error) {
	uid, did, ok := strings.Cut(id, ".")
	if !ok {
		return "", "", ErrClientID
	}
	if err := CheckUID(uid); err != nil {
		return "", "", errors.Join(ErrClientID, err)
	}
	if err := CheckDID(did); err != nil {
		return "", "", errors.Join(ErrClientID, err)
	}
	return uid, did, nil
}

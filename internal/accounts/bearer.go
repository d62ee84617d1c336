package accounts

import (
	"crypto/sha256"
	"errors"
	"strings"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Bearer authenticates a device token on its own, as HTTP requests carry
// it (PROTOCOL §15), and returns the identity the token is bound to:
// ErrBadCredentials for anything but a live token, ErrDisabled for a
// disabled user.
func (s *Service) Bearer(secret string) (topics.Identity, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return topics.Identity{}, ErrBadCredentials
	}
	sum := sha256.Sum256([]byte(secret))
	t, err := s.st.TokenByHash(sum[:])
	if errors.Is(err, im.ErrNotFound) {
		return topics.Identity{}, ErrBadCredentials
	}
	if err != nil {
		return topics.Identity{}, err
	}
	return s.authenticateToken(t.UID, t.DID, secret)
}

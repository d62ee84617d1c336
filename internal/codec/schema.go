package codec

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Read limits: every CBOR decoder of this package (upstream payloads and
// stored events alike) refuses data beyond them (im's, where the e2e
// record decodes itself). The upstream schema (Up.Check) is bounded by the
// same constants, so anything it accepts can be stored and read back
// (docs/security.md, "Stored data integrity").
const (
	MaxNestedLevels  = im.MaxNestedLevels
	MaxArrayElements = im.MaxArrayElements
	MaxMapPairs      = im.MaxMapPairs
)

// Upstream schema limits of a msg command (PROTOCOL §5, §12).
const (
	MaxCMID     = 32
	MaxCT       = 128
	MaxReactK   = 64
	MaxMentions = 64
	MaxAtt      = 32
	MaxTTL      = 365 * 24 * 3600 // seconds
	// MaxE2EKeys bounds the wrapped keys of one E2EE message: one per
	// recipient device.
	MaxE2EKeys = 1024
	// MaxWrappedKey bounds one wrapped key in bytes.
	MaxWrappedKey = 1024
	// maxAttText bounds an attachment's fid and ct text.
	maxAttText = 128
	// maxHash is a SHA-256.
	maxHash = 32
)

// The schema's sizes must fit the read limits; this fails to compile
// otherwise. An event is a map (level 1) holding at most an array of
// attachment maps or the e2e map of byte strings (levels 2 and 3).
const (
	_ = uint(MaxArrayElements - MaxMentions)
	_ = uint(MaxArrayElements - MaxAtt)
	_ = uint(MaxMapPairs - MaxE2EKeys)
	_ = uint(MaxNestedLevels - 3)
)

// E2E holds the wrapped message keys of an end-to-end encrypted message
// (im.E2E).
type E2E = im.E2E

// FieldError is a schema violation of one named field (im.FieldError).
type FieldError = im.FieldError

// Field returns the name of the field err is about, or "" when it does not
// name one.
func Field(err error) string {
	if fe, ok := errors.AsType[*FieldError](err); ok {
		return fe.Field
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		return te.Field
	}
	if te, ok := errors.AsType[*cbor.UnmarshalTypeError](err); ok && te.StructFieldName != "" {
		return te.StructFieldName
	}
	return ""
}

func bad(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Check validates a msg command against the upstream schema, beyond what
// decoding already enforced; maxBody bounds b. The error is a *FieldError.
func (u *Up) Check(maxBody int) error {
	switch u.Op {
	case "", "send", "edit", "del", "react":
	default:
		return bad("op", "unknown op")
	}
	switch {
	case u.CMID == "" || len(u.CMID) > MaxCMID:
		return bad("cmid", "must be 1 to %d bytes", MaxCMID)
	case len(u.B) > maxBody:
		return bad("b", "longer than %d bytes", maxBody)
	case len(u.CT) > MaxCT:
		return bad("ct", "longer than %d bytes", MaxCT)
	case u.TTL < 0 || u.TTL > MaxTTL:
		return bad("ttl", "must be 0 to %d seconds", MaxTTL)
	case len(u.Mn) > MaxMentions:
		return bad("mn", "more than %d mentions", MaxMentions)
	case len(u.Att) > MaxAtt:
		return bad("att", "more than %d attachments", MaxAtt)
	case len(u.K) > MaxReactK:
		return bad("k", "longer than %d bytes", MaxReactK)
	case len(u.To) > 2+2*32+1:
		return bad("to", "too long")
	case len(u.E2E) > MaxE2EKeys:
		return bad("e2e", "more than %d wrapped keys", MaxE2EKeys)
	}
	for _, m := range u.Mn {
		if topics.CheckUID(m) != nil {
			return bad("mn", "bad mention")
		}
	}
	for _, a := range u.Att {
		if len(a.FID) > maxAttText || len(a.CT) > maxAttText || len(a.H) > maxHash || len(a.N) > maxAttText || a.Z < 0 || a.W < 0 || a.HH < 0 {
			return bad("att", "bad attachment")
		}
	}
	for k, v := range u.E2E {
		uid, did, ok := cutDevice(k)
		if !ok || topics.CheckUID(uid) != nil || topics.CheckDID(did) != nil {
			return bad("e2e", "keys must be device ids {uid}.{did}")
		}
		if len(v) == 0 || len(v) > MaxWrappedKey {
			return bad("e2e", "wrapped keys must be 1 to %d bytes", MaxWrappedKey)
		}
	}
	return nil
}

func cutDevice(s string) (uid, did string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// Package codec holds Tern's wire envelopes (PROTOCOL §5, §6, §7, §9) with
// their short keys, and encodes and decodes them as JSON or CBOR (§13).
// Upstream payloads are told apart by their first byte: '{' or JSON
// whitespace means JSON, anything else CBOR. In CBOR, event ids and binary
// fields are byte strings (a ULID is 16 bytes); cmid and rid stay text.
package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

// Errors returned by the decoders.
var (
	ErrEmpty     = errors.New("codec: empty payload")
	ErrMalformed = errors.New("codec: malformed payload")
)

// Event types (the `t` field, §5): the domain's, under their wire names.
const (
	TMsg    = im.TMsg
	TEdit   = im.TEdit
	TDel    = im.TDel
	TReact  = im.TReact
	TMark   = im.TMark
	TMember = im.TMember
	TConv   = im.TConv
	TTyp    = im.TTyp
	TErr    = im.TErr
	TPres   = im.TPres
)

// Event is the domain event (im.Event); its field tags are the wire
// keys of §5 in JSON and CBOR.
type Event = im.Event

// Att is one attachment reference (im.Att).
type Att = im.Att

// Bin is a binary field (im.Bin): lowercase hex text in JSON, a byte
// string in CBOR.
type Bin = im.Bin

// Up is an upstream `…/msg` command: send (Op "" or "send"), "edit",
// "del" or "react".
type Up struct {
	Op   string     `json:"op,omitempty" cbor:"op,omitempty"`
	To   string     `json:"to,omitempty" cbor:"to,omitempty"`
	CMID string     `json:"cmid,omitempty" cbor:"cmid,omitempty"`
	ID   *ulid.ULID `json:"id,omitempty" cbor:"id,omitempty"` // edit, del, react target
	B    string     `json:"b,omitempty" cbor:"b,omitempty"`
	CT   string     `json:"ct,omitempty" cbor:"ct,omitempty"`
	Re   *ulid.ULID `json:"re,omitempty" cbor:"re,omitempty"`
	Th   *ulid.ULID `json:"th,omitempty" cbor:"th,omitempty"`
	Att  []Att      `json:"att,omitempty" cbor:"att,omitempty"`
	Mn   []string   `json:"mn,omitempty" cbor:"mn,omitempty"`
	TTL  int64      `json:"ttl,omitempty" cbor:"ttl,omitempty"`
	E2E  E2E        `json:"e2e,omitempty" cbor:"e2e,omitempty"`
	CTS  int64      `json:"cts,omitempty" cbor:"cts,omitempty"`
	K    string     `json:"k,omitempty" cbor:"k,omitempty"`
}

// Rcpt is an upstream receipt marker (§6).
type Rcpt struct {
	CV   string `json:"cv" cbor:"cv"`
	K    string `json:"k" cbor:"k"`
	Upto uint64 `json:"upto" cbor:"upto"`
}

// Typ is an upstream typing state (§7).
type Typ struct {
	CV string `json:"cv" cbor:"cv"`
	S  string `json:"s" cbor:"s"`
}

// Request is an upstream RPC request (§9). Its arguments stay encoded
// until Args is called with the op's argument struct.
type Request struct {
	RID  string
	Op   string
	args []byte
	cbor bool
}

type jsonRequest struct {
	RID string          `json:"rid"`
	Op  string          `json:"op"`
	A   json.RawMessage `json:"a"`
}

type cborRequest struct {
	RID string          `cbor:"rid"`
	Op  string          `cbor:"op"`
	A   cbor.RawMessage `cbor:"a"`
}

// Args decodes the request's arguments into v. Absent arguments leave v
// as it is.
func (r *Request) Args(v any) error {
	if len(r.args) == 0 || (!r.cbor && bytes.Equal(bytes.TrimSpace(r.args), []byte("null"))) {
		return nil
	}
	if r.cbor {
		if len(r.args) == 1 && r.args[0] == 0xf6 { // null
			return nil
		}
		if err := decMode.Unmarshal(r.args, v); err != nil {
			return fmt.Errorf("%w: args: %v", ErrMalformed, err)
		}
		return nil
	}
	if err := json.Unmarshal(r.args, v); err != nil {
		return fmt.Errorf("%w: args: %v", ErrMalformed, err)
	}
	return nil
}

// Reply is an RPC reply.
type Reply struct {
	RID string    `json:"rid" cbor:"rid"`
	OK  bool      `json:"ok" cbor:"ok"`
	R   any       `json:"r,omitempty" cbor:"r,omitempty"`
	Err *ReplyErr `json:"err,omitempty" cbor:"err,omitempty"`
}

// ReplyErr is the error of a failed RPC.
type ReplyErr struct {
	Code int    `json:"code" cbor:"code"`
	Msg  string `json:"msg" cbor:"msg"`
	// Have, on a file.commit refused for missing chunks (409), lists the
	// ranges of chunk indexes stored (PROTOCOL §11).
	Have [][2]int `json:"have,omitempty" cbor:"have,omitempty"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// Maps (e2e) in sorted key order, so one value has one encoding.
	encMode, err = cbor.EncOptions{Sort: cbor.SortCoreDeterministic}.EncMode()
	if err != nil {
		panic(err) // static options
	}
	opts := im.DecOptions() // the read limits, no duplicate keys
	opts.DefaultMapType = mapType
	decMode, err = opts.DecMode()
	if err != nil {
		panic(err) // static options
	}
}

// IsJSON reports whether an upstream payload is JSON (first non-space
// byte '{'); everything else is CBOR.
func IsJSON(p []byte) bool {
	for _, c := range p {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c == '{'
	}
	return false
}

// Decode decodes an upstream payload (JSON or CBOR by first byte) into v.
func Decode(p []byte, v any) error {
	if len(bytes.TrimSpace(p)) == 0 {
		return ErrEmpty
	}
	if IsJSON(p) || isSpace(p[0]) {
		dec := json.NewDecoder(bytes.NewReader(p))
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if dec.More() {
			return fmt.Errorf("%w: trailing data", ErrMalformed)
		}
		if _, err := dec.Token(); err == nil {
			return fmt.Errorf("%w: trailing data", ErrMalformed)
		}
		return nil
	}
	if err := decMode.Unmarshal(p, v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// DecodeRequest decodes an upstream RPC request.
func DecodeRequest(p []byte) (Request, error) {
	if len(bytes.TrimSpace(p)) == 0 {
		return Request{}, ErrEmpty
	}
	if IsJSON(p) || isSpace(p[0]) {
		var jr jsonRequest
		if err := Decode(p, &jr); err != nil {
			return Request{}, err
		}
		return Request{RID: jr.RID, Op: jr.Op, args: jr.A}, nil
	}
	var cr cborRequest
	if err := decMode.Unmarshal(p, &cr); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return Request{RID: cr.RID, Op: cr.Op, args: cr.A, cbor: true}, nil
}

// Encode encodes v as CBOR when cb is set, else JSON.
func Encode(v any, cb bool) ([]byte, error) {
	if cb {
		return encMode.Marshal(v)
	}
	return json.Marshal(v)
}

// MarshalStored encodes an event in its stored form (CBOR).
func MarshalStored(e *Event) ([]byte, error) { return encMode.Marshal(e) }

// UnmarshalStored decodes a stored event with the read limits
// (MaxNestedLevels, MaxArrayElements, MaxMapPairs).
func UnmarshalStored(p []byte, e *Event) error { return decMode.Unmarshal(p, e) }

// CutUTF8 cuts s to at most n bytes on a rune boundary: a truncated body
// (PROTOCOL §13), and any client-chosen text bounded for a log or an
// audit line.
func CutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

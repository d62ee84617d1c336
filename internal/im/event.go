package im

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/oklog/ulid/v2"
)

// Event types (the `t` field, §5).
const (
	TMsg    = "msg"
	TEdit   = "edit"
	TDel    = "del"
	TReact  = "react"
	TMark   = "mark"
	TMember = "member"
	TConv   = "conv"
	TTyp    = "typ"
	TErr    = "err"
	TPres   = "pres"
)

// Att is one attachment (PROTOCOL §11): a send carries only FID; the
// server fills in the rest from the committed file.
type Att struct {
	FID string `json:"fid" cbor:"fid"`
	N   string `json:"n,omitempty" cbor:"n,omitempty"` // file name
	Z   int64  `json:"z,omitempty" cbor:"z,omitempty"`
	CT  string `json:"ct,omitempty" cbor:"ct,omitempty"` // sniffed
	H   Bin    `json:"h,omitempty" cbor:"h,omitempty"`
	W   int    `json:"w,omitempty" cbor:"w,omitempty"` // image width
	HH  int    `json:"hh,omitempty" cbor:"hh,omitempty"`
}

// Bin is a binary field: lowercase hex text in JSON, a byte string in CBOR.
type Bin []byte

// MarshalJSON encodes b as a hex string.
func (b Bin) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(b)) }

// UnmarshalJSON decodes a hex string.
func (b *Bin) UnmarshalJSON(p []byte) error {
	var s string
	if err := json.Unmarshal(p, &s); err != nil {
		return err
	}
	out, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("codec: bad hex: %w", err)
	}
	*b = out
	return nil
}

// Event is one event of a conversation or a user's stream (PROTOCOL §5).
// The Log assigns ID, Seq and TS when it appends it; US is per user and
// set when an event is read from (or delivered into) a stream. Its field
// tags are the wire keys: internal/codec encodes it as is (codec.Event is
// this type), so delivery never copies it into another struct.
type Event struct {
	T    string     `json:"t" cbor:"t"`
	US   uint64     `json:"us,omitempty" cbor:"us,omitempty"`
	ID   ulid.ULID  `json:"id,omitzero" cbor:"id,omitzero"`
	CV   string     `json:"cv,omitempty" cbor:"cv,omitempty"`
	Seq  uint64     `json:"seq,omitempty" cbor:"seq,omitempty"`
	From string     `json:"from,omitempty" cbor:"from,omitempty"`
	FD   string     `json:"fd,omitempty" cbor:"fd,omitempty"`
	TS   int64      `json:"ts,omitempty" cbor:"ts,omitempty"`
	CMID string     `json:"cmid,omitempty" cbor:"cmid,omitempty"`
	CT   string     `json:"ct,omitempty" cbor:"ct,omitempty"`
	B    string     `json:"b,omitempty" cbor:"b,omitempty"`
	Tgt  *ulid.ULID `json:"tgt,omitempty" cbor:"tgt,omitempty"` // edit, del, react: the message changed
	Re   *ulid.ULID `json:"re,omitempty" cbor:"re,omitempty"`
	Th   *ulid.ULID `json:"th,omitempty" cbor:"th,omitempty"`
	Att  []Att      `json:"att,omitempty" cbor:"att,omitempty"`
	Mn   []string   `json:"mn,omitempty" cbor:"mn,omitempty"`
	TTL  int64      `json:"ttl,omitempty" cbor:"ttl,omitempty"`
	E2E  E2E        `json:"e2e,omitempty" cbor:"e2e,omitempty"`
	CTS  int64      `json:"cts,omitempty" cbor:"cts,omitempty"`
	K    string     `json:"k,omitempty" cbor:"k,omitempty"`   // react key, mark kind
	Rm   bool       `json:"rm,omitempty" cbor:"rm,omitempty"` // react: removed
	Upto uint64     `json:"upto,omitempty" cbor:"upto,omitempty"`
	Op   string     `json:"op,omitempty" cbor:"op,omitempty"` // member op
	Who  []string   `json:"who,omitempty" cbor:"who,omitempty"`
	By   string     `json:"by,omitempty" cbor:"by,omitempty"`
	Role string     `json:"role,omitempty" cbor:"role,omitempty"`
	Name string     `json:"name,omitempty" cbor:"name,omitempty"`
	Av   string     `json:"avatar,omitempty" cbor:"avatar,omitempty"`
	S    string     `json:"s,omitempty" cbor:"s,omitempty"` // typing state
	// Code and Msg are set on `err` events.
	Code  int    `json:"code,omitempty" cbor:"code,omitempty"`
	Msg   string `json:"msg,omitempty" cbor:"msg,omitempty"`
	Trunc bool   `json:"trunc,omitempty" cbor:"trunc,omitempty"`
	// Deleted marks a message (or an edit of it) that a del event
	// deleted: users get it as a tombstone, without body; the stored body
	// is gone unless a legal hold keeps it for export.
	Deleted bool `json:"deleted,omitempty" cbor:"deleted,omitempty"`
}

// Tombstone clears what users may no longer read of a deleted event (a
// no-op for others): the body, attachments, mentions and wrapped keys.
func (e *Event) Tombstone() {
	if e.Deleted {
		e.B, e.Att, e.Mn, e.E2E = "", nil, nil, nil
	}
}

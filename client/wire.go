package client

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/internal/codec"
)

// RPCError is a failed RPC (`ok:false`, §9); Code is the protocol's error
// code (400, 403, 404, 409, 413, 429, 500, 501, 503, …).
type RPCError struct {
	Op   string `json:"-" cbor:"-"`
	Code int    `json:"code" cbor:"code"`
	Msg  string `json:"msg" cbor:"msg"`
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("tern: %s: error %d: %s", e.Op, e.Code, e.Msg)
}

// reply is what arrives on the device's …/rpc: an RPC reply (RID set) or
// an err event (T "err").
type reply struct {
	RID  string
	OK   bool
	Err  *RPCError
	T    string
	CMID string
	Code int
	Msg  string
	r    []byte // the raw result
	cbor bool
}

type jsonReply struct {
	RID  string          `json:"rid"`
	OK   bool            `json:"ok"`
	R    json.RawMessage `json:"r"`
	Err  *RPCError       `json:"err"`
	T    string          `json:"t"`
	CMID string          `json:"cmid"`
	Code int             `json:"code"`
	Msg  string          `json:"msg"`
}

type cborReply struct {
	RID  string          `cbor:"rid"`
	OK   bool            `cbor:"ok"`
	R    cbor.RawMessage `cbor:"r"`
	Err  *RPCError       `cbor:"err"`
	T    string          `cbor:"t"`
	CMID string          `cbor:"cmid"`
	Code int             `cbor:"code"`
	Msg  string          `cbor:"msg"`
}

// decodeReply parses a payload of the device's …/rpc, JSON or CBOR.
func decodeReply(p []byte) (*reply, error) {
	if codec.IsJSON(p) {
		var j jsonReply
		if err := codec.Decode(p, &j); err != nil {
			return nil, err
		}
		return &reply{RID: j.RID, OK: j.OK, Err: j.Err, T: j.T, CMID: j.CMID, Code: j.Code, Msg: j.Msg, r: j.R}, nil
	}
	var c cborReply
	if err := codec.Decode(p, &c); err != nil {
		return nil, err
	}
	return &reply{RID: c.RID, OK: c.OK, Err: c.Err, T: c.T, CMID: c.CMID, Code: c.Code, Msg: c.Msg, r: c.R, cbor: true}, nil
}

// result decodes the reply's result into v (nil v: nothing to decode).
func (r *reply) result(v any) error {
	if v == nil || len(r.r) == 0 {
		return nil
	}
	if r.cbor {
		return codec.Decode(r.r, v)
	}
	if err := json.Unmarshal(r.r, v); err != nil {
		return fmt.Errorf("%w: %v", codec.ErrMalformed, err)
	}
	return nil
}

// errNotEvent is an …/eph payload of an unknown type.
var errNotEvent = errors.New("client: not an event")

// decodeEph parses a payload of the device's …/eph: typing or a watched
// presence change.
func decodeEph(p []byte) (Event, error) {
	var pe codec.PresenceEvent
	if err := codec.Decode(p, &pe); err != nil {
		return nil, err
	}
	switch pe.T {
	case "pres":
		return presence(pe.UID, pe.Presence), nil
	case codec.TTyp:
		var e codec.Event
		if err := codec.Decode(p, &e); err != nil {
			return nil, err
		}
		return &Typing{CV: e.CV, From: e.From, S: e.S, TTL: e.TTL}, nil
	}
	return nil, errNotEvent
}

func presence(uid string, p codec.Presence) *Presence {
	return &Presence{UID: uid, S: p.S, PV: p.PV, LS: p.LS, D: p.D, TX: p.TX}
}

package firmwaresim

import (
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/internal/codec"
)

// Event is a downstream stream event (PROTOCOL §5) as far as the
// simulator needs it. It decodes from JSON or CBOR.
type Event struct {
	T     string `json:"t"`
	US    uint64 `json:"us"`
	ID    textID `json:"id"`
	CV    string `json:"cv"`
	Seq   uint64 `json:"seq"`
	From  string `json:"from"`
	FD    string `json:"fd"`
	TS    int64  `json:"ts"`
	CMID  string `json:"cmid"`
	B     string `json:"b"`
	Code  int    `json:"code"`
	Msg   string `json:"msg"`
	Trunc bool   `json:"trunc"`
}

// textID holds an event id that is a string in JSON and a byte string
// (or text) in CBOR.
type textID string

// UnmarshalCBOR accepts a byte string or a text string.
func (t *textID) UnmarshalCBOR(b []byte) error {
	var v any
	if err := cbor.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case []byte:
		*t = textID(fmt.Sprintf("%x", x))
	case string:
		*t = textID(x)
	case nil:
	default:
		return fmt.Errorf("firmwaresim: id of type %T", v)
	}
	return nil
}

// RPCReply is the reply to an RPC request (PROTOCOL §9); err events
// (`{"t":"err",…}`) arrive on the same topic and decode into Event.
type RPCReply struct {
	RID string          `json:"rid"`
	OK  bool            `json:"ok"`
	R   cbor.RawMessage `json:"-"`
	Err *RPCError       `json:"err"`
	T   string          `json:"t"`

	raw  []byte
	cbor bool
}

// RPCError is the err member of a failed RPC reply.
type RPCError struct {
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Msg) }

// unmarshal decodes a JSON or CBOR payload into v.
func unmarshal(p []byte, v any) error {
	if codec.IsJSON(p) {
		return json.Unmarshal(p, v)
	}
	return cbor.Unmarshal(p, v)
}

// decodeReply decodes an RPC reply, keeping r raw for Result.
func decodeReply(p []byte) (*RPCReply, error) {
	rep := &RPCReply{raw: p, cbor: !codec.IsJSON(p)}
	if err := unmarshal(p, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// Result decodes the r member of the reply into v.
func (r *RPCReply) Result(v any) error {
	if r.cbor {
		var env struct {
			R cbor.RawMessage `cbor:"r"`
		}
		if err := cbor.Unmarshal(r.raw, &env); err != nil {
			return err
		}
		if len(env.R) == 0 {
			return nil
		}
		return cbor.Unmarshal(env.R, v)
	}
	var env struct {
		R json.RawMessage `json:"r"`
	}
	if err := json.Unmarshal(r.raw, &env); err != nil {
		return err
	}
	if len(env.R) == 0 {
		return nil
	}
	return json.Unmarshal(env.R, v)
}

// syncResult is the result of the sync RPC (§9).
type syncResult struct {
	Ev     []Event `json:"ev"`
	Next   uint64  `json:"next"`
	More   bool    `json:"more"`
	Reset  bool    `json:"reset"`
	USHead uint64  `json:"us_head"`
}

// HelloResult is the result of the hello RPC.
type HelloResult struct {
	Now    int64  `json:"now"`
	Epoch  uint64 `json:"epoch"`
	USHead uint64 `json:"us_head"`
}

// encode renders v in the device's encoding.
func encode(v any, useCBOR bool) ([]byte, error) {
	if useCBOR {
		return cbor.Marshal(v)
	}
	return json.Marshal(v)
}

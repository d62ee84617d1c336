package messaging

import (
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// ExtraOp is an RPC op served by another feature (file.* today, issue
// 12): args decodes the request's arguments; after, when not nil, runs
// once the reply is sent. A refusal error may carry its protocol code
// (Status() int) and, for file.commit, the chunks stored (Have()).
// Temporary hook-in until the IM-core redesign's op table lands.
type ExtraOp func(s *session.Session, args func(any) error) (result any, after func(), err error)

// extraRPC answers a request for an ExtraOp.
func (h *Hook) extraRPC(d *device, req *codec.Request, op ExtraOp) *apiError {
	r, after, err := op(d.s, req.Args)
	if after != nil {
		defer after()
	}
	rep := codec.Reply{RID: req.RID, OK: err == nil, R: r}
	var e *apiError
	if err != nil {
		e = errInternal
		var coded interface{ Status() int }
		if errors.As(err, &coded) {
			e = errf(coded.Status(), err.Error())
		} else {
			h.Log.Error("rpc", "op", req.Op, "error", err)
		}
		rep.R = nil
		rep.Err = &codec.ReplyErr{Code: e.Code, Msg: e.Msg}
		var have interface{ Have() [][2]int }
		if errors.As(err, &have) {
			rep.Err.Have = have.Have()
		}
	}
	b, encErr := codec.Encode(&rep, d.pref.CBOR)
	if encErr != nil {
		h.Log.Error("encode reply", "op", req.Op, "error", encErr)
		return errInternal
	}
	var props *packets.Properties
	if cd := d.pk.Properties.CorrelationData; len(cd) > 0 {
		props = &packets.Properties{CorrelationData: cd}
	}
	h.publish(topics.Device(d.uid, d.did, topics.ChanRPC), b, 1, props)
	return e
}

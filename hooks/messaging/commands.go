package messaging

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Upstream payload limits: what is read before the service sees anything.
const (
	// payloadSlack is what a msg payload may carry beyond the body.
	payloadSlack = 8 << 10
	// maxSmallPayload bounds rcpt and typ payloads.
	maxSmallPayload = 1 << 10
	// maxRPCPayload bounds an RPC request.
	maxRPCPayload = 64 << 10
)

// onMsg decodes a msg command and runs it; cmid is returned for the err
// event.
func (h *Hook) onMsg(d *device, payload []byte) (string, error) {
	if len(payload) > h.opts.MaxBody+payloadSlack {
		return "", im.ErrPayloadTooBig
	}
	var up codec.Up
	if err := codec.Decode(payload, &up); err != nil {
		if f := codec.Field(err); f != "" {
			return "", im.ErrMalformed.Detail(": bad " + f)
		}
		return "", im.ErrMalformed
	}
	return up.CMID, h.svc.Msg(h.caller(d), &up)
}

// decodeSmall decodes a small command (rcpt, typ) into a T.
func decodeSmall[T any](payload []byte) (*T, error) {
	if len(payload) > maxSmallPayload {
		return nil, im.ErrPayloadTooBig
	}
	var v T
	if err := codec.Decode(payload, &v); err != nil {
		return nil, im.ErrMalformed
	}
	return &v, nil
}

// onRcpt decodes a read/delivered marker and runs it.
func (h *Hook) onRcpt(d *device, payload []byte) error {
	r, err := decodeSmall[codec.Rcpt](payload)
	if err != nil {
		return err
	}
	return h.svc.Rcpt(h.caller(d), r)
}

// onTyp decodes a typing state and relays what the service lets through
// to the other members' devices that want typing, on …/eph at QoS 0,
// encoded once per encoding.
func (h *Hook) onTyp(d *device, payload []byte) error {
	t, err := decodeSmall[codec.Typ](payload)
	if err != nil {
		return err
	}
	ev, to, err := h.svc.Typing(h.caller(d), t)
	if err != nil || ev == nil {
		return err
	}
	if h.opts.Typing != nil {
		h.opts.Typing(ev, to)
	}
	return h.RelayTyping(ev, to)
}

// RelayTyping sends a typing event to the devices of to on this node
// that want typing, on …/eph at QoS 0, encoded once per encoding (a
// cluster node calls it for the typing that other nodes relay).
func (h *Hook) RelayTyping(ev *im.Event, to []string) error {
	var enc encodings
	for _, uid := range to {
		for _, s := range h.opts.Sessions.Devices(uid) {
			p := s.Prefs()
			if !p.Typing {
				continue
			}
			b, err := enc.get(ev, p.CBOR)
			if err != nil {
				return err
			}
			h.publish(topics.Device(uid, s.DID, topics.ChanEph), b, 0, nil)
		}
	}
	return nil
}

// onRPC decodes an RPC request, runs it and answers on the device's rpc
// topic. The returned error (also sent in the reply) sets the MQTT 5
// PUBACK reason.
func (h *Hook) onRPC(d *device, payload []byte) error {
	if len(payload) > maxRPCPayload {
		h.sendErr(d, "", im.ErrPayloadTooBig)
		return im.ErrPayloadTooBig
	}
	req, err := codec.DecodeRequest(payload)
	if err != nil {
		h.sendErr(d, "", im.ErrBadRequest)
		return im.ErrBadRequest
	}
	start := time.Now()
	c := h.caller(d)
	r, err := h.svc.Call(c, &req)
	code := 200
	if err != nil {
		code = im.Fault(err).Code
	}
	h.opts.Metrics.RPC(req.Op, code, time.Since(start))
	rep := codec.Reply{RID: req.RID, OK: err == nil, R: r}
	if err != nil {
		e := h.reject(d, "rpc "+req.Op, err)
		rep.R = nil
		rep.Err = &codec.ReplyErr{Code: e.Code, Msg: e.Msg}
		var have interface{ Have() [][2]int } // file.commit: the chunks stored
		if errors.As(err, &have) {
			rep.Err.Have = have.Have()
		}
		err = e
	}
	// The hello reply is JSON; everything after it uses the new encoding
	// (d.pref is what the device had before this request).
	cb := d.pref.CBOR && req.Op != "hello"
	b, encErr := codec.Encode(&rep, cb)
	if encErr != nil {
		h.Log.Error("encode reply", "op", req.Op, "error", encErr)
		return im.ErrInternal
	}
	var props *packets.Properties
	if cd := d.pk.Properties.CorrelationData; len(cd) > 0 {
		// MQTT 5: Correlation Data is echoed; a Response Topic is honoured
		// only when it is the device's own reply topic, which is where the
		// reply goes anyway.
		props = &packets.Properties{CorrelationData: cd}
	}
	h.publish(topics.Device(d.uid, d.did, topics.ChanRPC), b, 1, props)
	if a, ok := r.(interface{ AfterReply() }); ok && rep.OK {
		a.AfterReply()
	}
	return err
}

// notImplemented answers the upstream call publishes.
func notImplemented(*Hook, *device, []byte) (string, error) { return "", im.ErrNotImplemented }

// publishMeta retains im/g/{gid}/meta (JSON: shared retained topics are
// always JSON). The service announces every group change here.
// Announce republishes a group's retained meta (a cluster node calls it
// when another node changed the group).
func (h *Hook) Announce(g im.Group) { h.publishMeta(g) }

func (h *Hook) publishMeta(g im.Group) {
	b, err := json.Marshal(codec.GroupMeta{Name: g.Name, Avatar: g.Avatar, N: g.N, V: g.V})
	if err != nil {
		h.Log.Error("encode group meta", "error", err)
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   topics.GroupMeta(g.GID),
		Payload:     b,
		PacketID:    1, // mochi requires one for QoS 1; inline ids are not tracked
	}
	if err := h.opts.Server.InjectPacket(h.inline, pk); err != nil {
		h.Log.Error("publish group meta", "group", g.GID, "error", err)
	}
}

// encodings caches one event's encoding per format.
type encodings [2][]byte

func (e *encodings) get(ev *im.Event, cbor bool) ([]byte, error) {
	i := 0
	if cbor {
		i = 1
	}
	if e[i] == nil {
		b, err := codec.Encode(ev, cbor)
		if err != nil {
			return nil, err
		}
		e[i] = b
	}
	return e[i], nil
}

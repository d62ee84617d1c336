// Package files is the Tern file hook (PROTOCOL §11): it consumes upload
// chunks on im/up/{uid}/{did}/f/{fid}/{i}, acknowledging each only once it
// is stored, answers the file.* RPC ops (handed to the RPC dispatcher as
// Ops), and delivers download chunks to im/u/{uid}/d/{did}/f/{fid}/{i}.
// Storage is internal/files.
package files

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/service"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

const (
	// overhead is what a chunk's PUBLISH needs besides its payload: fixed
	// header, the longest chunk topic, packet id and MQTT 5 properties.
	overhead = 192
	// minChunk is the smallest chunk size handed out.
	minChunk = 256
	// getWindow bounds the chunks one file.get sends (Options.GetBytes
	// their bytes), so that a download never floods the device's queue.
	getWindow = 64
	// defaultGetBytes is Options.GetBytes when it is 0.
	defaultGetBytes = 512 << 10
)

// Options configures the hook. Server, Files and Sessions are required.
type Options struct {
	Server   *mqtt.Server
	Files    *files.Service
	Sessions *session.Registry
	// MaxPacket is the broker's maximum packet size (a device's maxPkt
	// defaults to it).
	MaxPacket int
	// UploadRate is the chunk bytes per second each device may send, with
	// bursts of UploadBurst; beyond it chunks get 429. 0 means no limit.
	UploadRate, UploadBurst int64
	// GetBytes bounds the chunk bytes one file.get sends: it must stay
	// below what the broker holds in flight per client
	// (limits.max_inflight_bytes), or the oldest chunks of a window would
	// be dropped before a slow device acknowledges them, every time.
	// 0 means 512 KiB.
	GetBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Hook is the file hook.
type Hook struct {
	mqtt.HookBase
	opts   *Options
	inline *mqtt.Client
	rate   *byteRate
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-files" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnStarted}, []byte{b})
}

// Init takes *Options.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil || o.Server == nil || o.Files == nil || o.Sessions == nil {
		return mqtt.ErrInvalidConfigType
	}
	if o.MaxPacket <= 0 {
		o.MaxPacket = 128 << 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.GetBytes <= 0 {
		o.GetBytes = defaultGetBytes
	}
	h.rate = newByteRate(o.UploadRate, max(o.UploadBurst, int64(o.MaxPacket)))
	h.opts = o
	h.inline = o.Server.NewClient(nil, mqtt.LocalListener, "tern-files", true)
	return nil
}

// OnStarted starts the collector of expired uploads.
func (h *Hook) OnStarted() { h.opts.Files.Start() }

// Stop stops the collector.
func (h *Hook) Stop() error {
	if h.opts != nil {
		h.opts.Files.Stop()
	}
	return nil
}

// OnPublish consumes upload chunks. It returns only nil (not a chunk),
// CodeSuccessIgnore (stored, or refused for a 3.1.1 or QoS 0 client), or
// an MQTT 5 reason code: mochi never routes a chunk.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, "im/up/") {
		return pk, nil
	}
	u, ok := topics.ParseUp(pk.TopicName)
	if !ok || u.Kind != topics.UpFile {
		return pk, nil
	}
	s, ok := h.opts.Sessions.Get(cl)
	if !ok || s.Anonymous || s.UID != u.UID || s.DID != u.DID {
		return pk, packets.CodeSuccessIgnore
	}
	var err error = errRate
	if h.rate.allow(s.UID+"."+s.DID, len(pk.Payload), h.opts.Now()) {
		err = h.opts.Files.WriteChunk(s.UID, u.FID, u.Chunk, pk.Payload)
	}
	if err == nil {
		return pk, packets.CodeSuccessIgnore
	}
	e := refusal(err)
	h.Log.Debug("file chunk refused", "client", cl.ID, "topic", pk.TopicName, "code", e.Code, "error", err)
	h.sendErr(s, e, "chunk "+strconv.Itoa(u.Chunk)+" of "+u.FID+": ")
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
		return pk, reason(e.Code)
	}
	return pk, packets.CodeSuccessIgnore
}

// refusal maps an error of the file service to what the client is told.
func refusal(err error) *files.Error {
	var e *files.Error
	if errors.As(err, &e) {
		return e
	}
	return &files.Error{Code: 500, Msg: "server fault"}
}

// reason maps an app code to an MQTT 5 PUBACK reason code (PROTOCOL §14).
func reason(code int) packets.Code {
	switch code {
	case 400, 413:
		return packets.ErrPayloadFormatInvalid
	case 401, 403:
		return packets.ErrNotAuthorized
	case 404, 409:
		return packets.ErrImplementationSpecificError
	case 429, 503:
		return packets.ErrQuotaExceeded
	}
	return packets.ErrUnspecifiedError
}

// sendErr publishes an err event on the device's rpc topic.
func (h *Hook) sendErr(s *session.Session, e *files.Error, prefix string) {
	ev := codec.Event{T: codec.TErr, Code: e.Code, Msg: prefix + e.Msg}
	b, err := codec.Encode(&ev, s.Prefs().CBOR)
	if err != nil {
		h.Log.Error("encode err event", "error", err)
		return
	}
	h.publish(topics.Device(s.UID, s.DID, topics.ChanRPC), b)
}

// publish injects a QoS 1 downstream publish through the inline client.
func (h *Hook) publish(topic string, payload []byte) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    1, // mochi requires one for QoS > 0; inline ids are not tracked
	}
	if err := h.opts.Server.InjectPacket(h.inline, pk); err != nil {
		h.Log.Debug("publish", "topic", topic, "error", err)
	}
}

// chunkFor is the chunk size for a device: its packet size (the broker's
// when it said none) less the PUBLISH overhead, in whole 256-byte units.
func (h *Hook) chunkFor(p im.Prefs) int {
	pkt := h.opts.MaxPacket
	if p.MaxPkt > 0 && p.MaxPkt < pkt {
		pkt = p.MaxPkt
	}
	return max(minChunk, (pkt-overhead)/minChunk*minChunk)
}

// errRate refuses a chunk beyond the device's upload rate.
var errRate = &files.Error{Code: 429, Msg: "upload rate exceeded: send it again later"}

// Ops returns the file.* RPC ops, for the IM service's op table.
func (h *Hook) Ops() map[string]service.Op {
	return map[string]service.Op{
		"file.put":    withArgs(h.put),
		"file.commit": withArgs(h.commit),
		"file.stat":   withArgs(h.stat),
		"file.get":    withArgs(h.get),
	}
}

// withArgs decodes an op's arguments into an A (400 "bad args" when they
// do not decode) and maps the file service's refusals to the domain's
// errors (im.Error: code and message).
func withArgs[A any](fn func(d *service.Device, a *A) (any, error)) service.Op {
	return func(d *service.Device, req *codec.Request) (any, error) {
		var a A
		if err := req.Args(&a); err != nil {
			return nil, im.ErrBadArgs
		}
		r, err := fn(d, &a)
		return r, domainErr(err)
	}
}

// domainErr turns a *files.Error into an *im.Error with its code and
// message; a HaveError keeps its ranges and wraps the im.Error.
func domainErr(err error) error {
	var he *HaveError
	var fe *files.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		return he
	case errors.As(err, &fe):
		return &im.Error{Code: fe.Code, Msg: fe.Msg}
	}
	return err
}

// HaveError is a refusal of file.commit that tells which chunks are
// stored (409): the messaging adapter puts Have into the reply's error.
type HaveError struct {
	err  *im.Error
	have [][2]int
}

func (e *HaveError) Error() string { return e.err.Msg }

// Have returns the ranges of chunk indexes stored.
func (e *HaveError) Have() [][2]int { return e.have }

// Unwrap returns the domain error (code and message).
func (e *HaveError) Unwrap() error { return e.err }

func ranges(rs []files.Range) [][2]int {
	out := make([][2]int, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out
}

func info(f files.File) codec.FileInfo {
	h, _ := hex.DecodeString(f.Hash) // "" for an upload whose hash is not known yet
	return codec.FileInfo{FID: f.FID, N: f.Name, Z: f.Size, CT: f.CT, H: h, W: f.W, HH: f.H}
}

func (h *Hook) put(d *service.Device, a *codec.FilePutArgs) (any, error) {
	if len(a.H) != 32 {
		return nil, files.ErrBadHash
	}
	f, have, err := h.opts.Files.Put(d.UID, files.PutRequest{
		Name: a.N, Size: a.Z, CT: a.CT, Hash: hex.EncodeToString(a.H),
	}, h.chunkFor(d.Prefs))
	if err != nil {
		return nil, err
	}
	return codec.FilePutResult{FID: f.FID, Chunk: f.Chunk, Have: ranges(have)}, nil
}

func checkFileArgs(a *codec.FileArgs) error {
	if a.FID == "" || a.From < 0 || a.Cnt < 0 {
		return im.ErrBadArgs
	}
	return nil
}

func (h *Hook) commit(d *service.Device, a *codec.FileArgs) (any, error) {
	if err := checkFileArgs(a); err != nil {
		return nil, err
	}
	f, have, err := h.opts.Files.Commit(d.UID, a.FID)
	if errors.Is(err, files.ErrIncomplete) || errors.Is(err, files.ErrHashMismatch) {
		var fe *files.Error
		errors.As(err, &fe)
		return nil, &HaveError{err: &im.Error{Code: fe.Code, Msg: fe.Msg}, have: ranges(have)}
	}
	if err != nil {
		return nil, err
	}
	return info(f), nil
}

func (h *Hook) stat(d *service.Device, a *codec.FileArgs) (any, error) {
	if err := checkFileArgs(a); err != nil {
		return nil, err
	}
	f, have, err := h.opts.Files.Stat(d.UID, a.FID, h.chunkFor(d.Prefs))
	if err != nil {
		return nil, err
	}
	r := info(f)
	committed := f.IsCommitted()
	r.Committed, r.Chunk, r.Have = &committed, f.Chunk, ranges(have)
	return r, nil
}

// getReply is the result of file.get; the adapter calls AfterReply once
// the reply is sent, and the chunks follow it.
type getReply struct {
	codec.FileGetResult
	send func()
}

// AfterReply publishes the chunks the reply announced.
func (g *getReply) AfterReply() { g.send() }

// get answers with the file's size, hash, type and this device's chunk
// size, then (after the reply) publishes the asked chunks, at most
// getWindow of them and Options.GetBytes in all: the device asks again from
// where it stands.
func (h *Hook) get(d *service.Device, a *codec.FileArgs) (any, error) {
	if err := checkFileArgs(a); err != nil {
		return nil, err
	}
	f, err := h.opts.Files.Get(d.UID, a.FID)
	if err != nil {
		return nil, err
	}
	chunk := h.chunkFor(d.Prefs)
	count := int((f.Size + int64(chunk) - 1) / int64(chunk))
	from := min(a.From, count)
	cnt := a.Cnt
	if cnt == 0 {
		cnt = count
	}
	cnt = min(cnt, count-from, getWindow, max(1, h.opts.GetBytes/chunk))
	hash, _ := hex.DecodeString(f.Hash)
	uid, did := d.UID, d.DID
	return &getReply{
		FileGetResult: codec.FileGetResult{FID: f.FID, Z: f.Size, H: hash, CT: f.CT, Chunk: chunk, Count: count, From: from, Cnt: cnt},
		send:          func() { h.sendChunks(uid, did, f, chunk, from, cnt) },
	}, nil
}

func (h *Hook) sendChunks(uid, did string, f files.File, chunk, from, cnt int) {
	r, err := h.opts.Files.Read(f)
	if err != nil {
		h.Log.Error("open file for download", "fid", f.FID, "error", err)
		return
	}
	defer r.Close()
	for i := from; i < from+cnt; i++ {
		off := int64(i) * int64(chunk)
		buf := make([]byte, min(int64(chunk), f.Size-off))
		if _, err := r.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			h.Log.Error("read file chunk", "fid", f.FID, "chunk", i, "error", err)
			return
		}
		h.publish(topics.DeviceFileChunk(uid, did, f.FID, i), buf)
	}
}

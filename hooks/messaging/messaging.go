// Package messaging is the Tern messaging hook: it consumes the upstream
// msg, rcpt, typ and rpc commands of every device (PROTOCOL §5–§7, §9),
// sequences and persists events through a narrow Storage interface before
// acknowledging them, and delivers them to each member device in that
// device's encoding. docs/architecture.md describes the flow.
package messaging

import (
	"bytes"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/metrics"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/internal/store"
	"github.com/tern-im/tern/topics"
)

// Storage is what the hook needs from persistence. *store.Store implements
// it over Badger. Append is the only write path for stream events: it
// assigns id, seq, us and ts and returns once the events are durable.
type Storage interface {
	Append(as ...*store.Append) error
	Stream(uid string, since uint64, max int) ([]codec.Event, bool, error)
	History(cv string, lo, hi, before, after uint64, max int) ([]codec.Event, bool, error)
	EventByID(id ulid.ULID) (codec.Event, error)
	Deduped(uid, did, cmid string) (codec.Event, error)
	USHead(uid string) (uint64, error)
	ConvSeq(cv string) (uint64, error)
	Marker(cv, uid, k string) (uint64, error)
	Group(gid string) (store.Group, error)
	AllGroups(fn func(store.Group) error) error
	Member(gid, uid string) (store.MemberRec, error)
	Reacted(id ulid.ULID, uid, k string) (bool, error)
	UserConvs(uid string) ([]string, error)
	// DMFloor is the last seq of DM cv that a deleted earlier account uid
	// could read (0 if none): uid reads only later seqs.
	DMFloor(cv, uid string) (uint64, error)
	User(uid string) (store.User, error)
	// DMPeer reports, in one read, whether other exists and whether
	// either of uid and other blocks the other.
	DMPeer(uid, other string) (exists, blocked bool, err error)
	SetContact(uid, other string, on bool) error
	SetBlock(uid, other string, on bool) error
	// Presences returns the stored presence of those of uids that have
	// one (presence.get).
	Presences(uids []string) (map[string]store.Presence, error)
	RelationStore
}

// Options configures the hook. Server, Store, Sessions and Relations are
// required.
type Options struct {
	Server    *mqtt.Server
	Store     Storage
	Sessions  *session.Registry
	Relations *Relations
	// Epoch is this run's epoch, reported in hello.
	Epoch uint64
	// DMPolicy is "open" or "contacts" (the recipient must have the sender
	// in C(recipient)).
	DMPolicy string
	// MaxPacket is the broker's maximum packet size: the default maxPkt.
	MaxPacket int
	// MaxBody is the largest text body (b) in bytes.
	MaxBody int
	// RateBurst and RatePerSec size the per-device token bucket of msg ops.
	RateBurst  int
	RatePerSec float64
	// MaxGroupMembers caps a group's size.
	MaxGroupMembers int
	// Limits are the RPC rate limits and group caps.
	Limits Limits
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts RPCs and deliveries; nil counts nothing.
	Metrics *metrics.Metrics
	// Ops are RPC ops served by other features, by name.
	Ops map[string]ExtraOp
}

// Hook is the messaging hook.
type Hook struct {
	mqtt.HookBase
	opts   *Options
	inline *mqtt.Client
	rate   *limiter
	rpc    *rpcLimits
	typing *typingGate
	users  stripes
	groups stripes
	dl     *deliverer
	peers  *peerCache
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-messaging" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnStarted}, []byte{b})
}

// Init takes *Options.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil || o.Server == nil || o.Store == nil || o.Sessions == nil || o.Relations == nil {
		return mqtt.ErrInvalidConfigType
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPacket <= 0 {
		o.MaxPacket = 128 << 10
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 8 << 10
	}
	if o.RateBurst <= 0 {
		o.RateBurst = 500
	}
	if o.RatePerSec <= 0 {
		o.RatePerSec = 100
	}
	if o.MaxGroupMembers <= 0 {
		o.MaxGroupMembers = 5000
	}
	h.opts = o
	h.inline = o.Server.NewClient(nil, mqtt.LocalListener, "tern-messaging", true)
	h.rate = newLimiter(o.RateBurst, o.RatePerSec, o.Now)
	h.rpc = newRPCLimits(o.Limits, o.Now)
	h.typing = newTypingGate(2*time.Second, o.Now)
	h.peers = newPeerCache(o.Now)
	h.dl = newDeliverer(h, 4)
	return nil
}

// Stop stops the delivery workers. Appends that commit later are still
// durable; their live delivery is skipped (devices sync).
func (h *Hook) Stop() error {
	if h.dl != nil {
		h.dl.stop()
	}
	return nil
}

// OnStarted republishes the retained meta of every group: mochi keeps
// retained messages in memory only.
func (h *Hook) OnStarted() {
	err := h.opts.Store.AllGroups(func(g store.Group) error {
		h.publishMeta(g)
		return nil
	})
	if err != nil {
		h.Log.Error("republish group meta", "error", err)
	}
}

// apiError is an app-level rejection with its HTTP-like code.
type apiError struct {
	Code int
	Msg  string
}

func (e *apiError) Error() string { return e.Msg }

func errf(code int, msg string) *apiError { return &apiError{code, msg} }

var (
	errInternal = errf(500, "server fault")
	errClosed   = errf(503, "shutting down")
	errNoSpace  = errf(507, "insufficient storage")
)

// fault maps a storage error to an apiError.
func fault(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrClosed):
		return errClosed
	case errors.Is(err, store.ErrNoSpace):
		return errNoSpace
	case errors.Is(err, store.ErrTooBig):
		return errf(413, "too large")
	}
	return errInternal
}

// reason maps an app code to an MQTT 5 PUBACK reason code.
func reason(code int) packets.Code {
	switch code {
	case 400, 413:
		return packets.ErrPayloadFormatInvalid
	case 401, 403:
		return packets.ErrNotAuthorized
	case 404, 409, 501:
		return packets.ErrImplementationSpecificError
	case 429, 503, 507:
		return packets.ErrQuotaExceeded
	}
	return packets.ErrUnspecifiedError
}

// device is the context of one upstream command.
type device struct {
	s    *session.Session
	cl   *mqtt.Client
	pk   *packets.Packet
	uid  string
	did  string
	pref session.Prefs
}

// OnPublish consumes upstream msg, rcpt, typ and rpc publishes. It
// returns only nil (not ours), CodeSuccessIgnore, or for an MQTT 5 QoS 1
// rejection its reason code: any other error would make mochi route the
// packet as-is.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, "im/up/") {
		return pk, nil
	}
	u, ok := topics.ParseUp(pk.TopicName)
	if !ok {
		return pk, nil
	}
	switch u.Kind {
	case topics.UpMsg, topics.UpRcpt, topics.UpTyp, topics.UpRPC, topics.UpCall:
	default:
		return pk, nil // another feature hook's, or dropped by acl
	}
	s, ok := h.opts.Sessions.Get(cl)
	if !ok || s.Anonymous || s.UID != u.UID || s.DID != u.DID {
		return pk, packets.CodeSuccessIgnore
	}
	d := &device{s: s, cl: cl, pk: &pk, uid: s.UID, did: s.DID, pref: s.Prefs()}
	var cmid string
	var err *apiError
	switch u.Kind {
	case topics.UpMsg:
		cmid, err = h.onMsg(d, pk.Payload)
	case topics.UpRcpt:
		err = h.onRcpt(d, pk.Payload)
	case topics.UpTyp:
		err = h.onTyp(d, pk.Payload)
	case topics.UpRPC:
		err = h.onRPC(d, pk.Payload)
	case topics.UpCall:
		err = errNotImplemented // refused, not acknowledged and dropped
	}
	if err == nil {
		return pk, packets.CodeSuccessIgnore
	}
	if u.Kind != topics.UpRPC { // RPC failures are answered in the reply
		h.sendErr(d, cmid, err)
	}
	if err.Code < 500 { // a client fault: debug, never a body
		h.Log.Debug("upstream refused", "user", d.uid, "device", d.did, "kind", u.Kind, "code", err.Code, "reason", err.Msg)
	}
	// mochi answers a reason code with a PUBACK: right for QoS 1 only.
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
		return pk, reason(err.Code)
	}
	return pk, packets.CodeSuccessIgnore
}

// sendErr publishes an err event on the device's rpc topic.
func (h *Hook) sendErr(d *device, cmid string, e *apiError) {
	ev := codec.Event{T: codec.TErr, CMID: cmid, Code: e.Code, Msg: e.Msg}
	b, err := codec.Encode(&ev, d.pref.CBOR)
	if err != nil {
		h.Log.Error("encode err event", "error", err)
		return
	}
	h.publish(topics.Device(d.uid, d.did, topics.ChanRPC), b, 1, nil)
}

// publish injects a downstream publish through the hook's inline client.
func (h *Hook) publish(topic string, payload []byte, qos byte, props *packets.Properties) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    uint16(qos), // mochi requires one for QoS > 0; inline ids are not tracked
	}
	if props != nil {
		pk.Properties = *props
	}
	if err := h.opts.Server.InjectPacket(h.inline, pk); err != nil {
		h.Log.Debug("publish", "topic", topic, "error", err)
	}
}

// stripes serialises work per key (a user's markers and reactions, a
// group's membership changes) without a lock per key. Sends into a group
// hold its stripe shared from resolving the members to the commit, and
// membership changes hold it exclusively until the member cache is
// invalidated: a message is never sequenced after a membership change
// with the member list from before it.
type stripes struct {
	mu   [256]sync.RWMutex
	seed maphash.Seed
	once sync.Once
}

func (s *stripes) get(k string) *sync.RWMutex {
	s.once.Do(func() { s.seed = maphash.MakeSeed() })
	return &s.mu[maphash.String(s.seed, k)%uint64(len(s.mu))]
}

func (s *stripes) lock(k string) func() {
	m := s.get(k)
	m.Lock()
	return m.Unlock
}

func (s *stripes) rlock(k string) func() {
	m := s.get(k)
	m.RLock()
	return m.RUnlock
}

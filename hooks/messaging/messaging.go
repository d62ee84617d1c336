// Package messaging is the MQTT adapter of the IM core (internal/im): it
// consumes the upstream msg, rcpt, typ and rpc commands of every device
// (PROTOCOL §5–§7, §9) from a table of handlers, decodes them, calls
// internal/im/service (which appends with positions assigned before the
// PUBACK), answers with replies, err events and MQTT 5 reason codes from
// the named im errors, and delivers committed events from the
// im.CommitStream to each member device, encoded once per recipient and
// encoding. docs/architecture.md describes the flow.
package messaging

import (
	"bytes"
	"errors"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/service"
	"github.com/tern-im/tern/internal/metrics"
	"github.com/tern-im/tern/internal/offstack"
	"github.com/tern-im/tern/internal/relations"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// Options configures the hook; every field but Now, Metrics and Search is
// required. Policy configures the hook's service.Service (internal/config
// owns its defaults).
type Options struct {
	service.Policy
	Server *mqtt.Server
	// Store is the IM core's storage, every port of it.
	Store im.Store
	// Commits is the stream the Store publishes committed appends on;
	// the hook reserves a slot before each append and delivers from it.
	Commits   *im.CommitStream
	Sessions  *session.Registry
	Relations *relations.Relations
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts RPCs and deliveries; nil counts nothing.
	Metrics *metrics.Metrics
	// Content, Compliance and Audit are the service's (PROTOCOL §16);
	// each may be nil.
	Content    im.ContentPolicy
	Compliance im.Compliance
	Audit      audit.Logger
	// Ops are RPC ops of other features (file.*), added to the service's
	// op table.
	Ops map[string]service.Op
	// Files checks and fills in attachments and keeps file references.
	Files service.Files
	// Search answers the search RPC; nil answers it 501.
	Search im.Searcher
	// Typing, when set, is also handed every typing event the service
	// lets through, with its recipients (a cluster node relays it to the
	// other nodes, whose RelayTyping reaches their devices).
	Typing func(ev *im.Event, to []string)
}

// Hook is the messaging hook.
type Hook struct {
	mqtt.HookBase
	opts   *Options
	svc    *service.Service
	inline *mqtt.Client
	dl     *deliverer
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
	if !ok || o == nil || o.Server == nil || o.Store == nil || o.Commits == nil || o.Sessions == nil || o.Relations == nil {
		return mqtt.ErrInvalidConfigType
	}
	h.opts = o
	h.inline = o.Server.NewClient(nil, mqtt.LocalListener, "tern-messaging", true)
	h.dl = newDeliverer(h)
	pol := o.Policy
	if m := o.Metrics; m != nil && pol.Limits.Limited == nil {
		pol.Limits.Limited = func(limit string) { m.Limited.WithLabelValues(limit).Inc() }
	}
	svc, err := service.New(service.Options{
		Policy: pol, Store: o.Store, Commits: o.Commits, Stop: h.dl.quit, Relations: o.Relations,
		Announce: h.publishMeta, Now: o.Now, Ops: o.Ops, Files: o.Files, Search: o.Search,
		Content: o.Content, Compliance: o.Compliance, Audit: o.Audit,
	})
	if err != nil {
		h.dl.stop()
		return err
	}
	h.svc = svc
	return nil
}

// Service returns the IM service the hook runs (after Init): the file
// store asks it who may read a file.
func (h *Hook) Service() *service.Service { return h.svc }

// Stop stops delivery. Appends that commit later are still durable;
// their live delivery is skipped (devices sync).
func (h *Hook) Stop() error {
	if h.dl != nil {
		h.dl.stop()
	}
	return nil
}

// OnStarted republishes the retained meta of every group: mochi keeps
// retained messages in memory only.
func (h *Hook) OnStarted() {
	err := h.opts.Store.AllGroups(func(g im.Group) error {
		h.publishMeta(g)
		return nil
	})
	if err != nil {
		h.Log.Error("republish group meta", "error", err)
	}
}

// reason maps an app code to an MQTT 5 PUBACK reason code.
func reason(code int) packets.Code {
	switch code {
	case 400, 413:
		return packets.ErrPayloadFormatInvalid
	case 401, 403, 451:
		return packets.ErrNotAuthorized
	case 404, 409, 501:
		return packets.ErrImplementationSpecificError
	case 429, 503, 507:
		return packets.ErrQuotaExceeded
	}
	return packets.ErrUnspecifiedError
}

// device is the context of one upstream command; it is also the
// connection the service reaches the device through (service.Conn).
type device struct {
	h    *Hook
	s    *session.Session
	cl   *mqtt.Client
	pk   *packets.Packet
	uid  string
	did  string
	pref session.Prefs
	svc  service.Device
}

// caller is the device as the service sees it.
func (h *Hook) caller(d *device) *service.Device {
	d.svc = service.Device{UID: d.uid, DID: d.did, Prefs: d.pref, Conn: d}
	return &d.svc
}

// SetPrefs records what hello negotiated on the session.
func (d *device) SetPrefs(p im.Prefs) { d.s.SetPrefs(p) }

// Resend sends the device an event again.
func (d *device) Resend(ev *im.Event) { d.h.sendEvent(d, ev) }

// command handles one kind of upstream command; cmid (msg only) goes
// into the err event of a rejection.
type command func(h *Hook, d *device, payload []byte) (cmid string, err error)

// commands is the table of upstream commands this hook consumes. An RPC
// answers its own failures in the reply, so it sends no err event. All
// but msg publish on the device's goroutine (replies, relayed typing),
// a deep call through mochi, so they run off its stack (offstack); a msg
// only appends (its events are delivered by the delivery workers).
var commands = map[string]struct {
	handle  command
	quiet   bool
	onStack bool
}{
	topics.UpMsg: {handle: (*Hook).onMsg, onStack: true},
	// f (§11 file chunks) is the file hook's.
	topics.UpRcpt: {handle: func(h *Hook, d *device, p []byte) (string, error) { return "", h.onRcpt(d, p) }},
	topics.UpTyp:  {handle: func(h *Hook, d *device, p []byte) (string, error) { return "", h.onTyp(d, p) }},
	topics.UpRPC:  {handle: func(h *Hook, d *device, p []byte) (string, error) { return "", h.onRPC(d, p) }, quiet: true},
	// Not built yet: refused, not acknowledged and dropped (§11 calls).
	topics.UpCall: {handle: notImplemented},
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
	cmd, ok := commands[u.Kind]
	if !ok {
		return pk, nil // another feature hook's, or dropped by acl
	}
	s, ok := h.opts.Sessions.Get(cl)
	if !ok || s.Anonymous || s.UID != u.UID || s.DID != u.DID {
		return pk, packets.CodeSuccessIgnore
	}
	d := &device{h: h, s: s, cl: cl, pk: &pk, uid: s.UID, did: s.DID, pref: s.Prefs()}
	var cmid string
	var err error
	if cmd.onStack {
		cmid, err = cmd.handle(h, d, pk.Payload)
	} else {
		offstack.Run(func() { cmid, err = cmd.handle(h, d, pk.Payload) })
	}
	if err == nil {
		return pk, packets.CodeSuccessIgnore
	}
	e := h.reject(d, u.Kind, err)
	if !cmd.quiet {
		offstack.Run(func() { h.sendErr(d, cmid, e) })
	}
	// mochi answers a reason code with a PUBACK: right for QoS 1 only.
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
		return pk, reason(e.Code)
	}
	return pk, packets.CodeSuccessIgnore
}

// reject maps err to what the client is told and logs it: a server fault
// (500) at error; a client's fault, and the refusals that are states the
// broker reports elsewhere (501 not built, 503 overloaded, 507 below the
// disk reserve: /readyz and metrics), at debug.
func (h *Hook) reject(d *device, kind string, err error) *im.Error {
	e := im.Fault(err)
	if e.Code == 500 && !errors.Is(err, im.ErrClosed) {
		h.Log.Error("upstream failed", "user", d.uid, "device", d.did, "kind", kind, "error", err)
	} else { // a client fault: debug, never a body
		h.Log.Debug("upstream refused", "user", d.uid, "device", d.did, "kind", kind, "code", e.Code, "reason", e.Msg)
	}
	return e
}

// sendErr publishes an err event on the device's rpc topic.
func (h *Hook) sendErr(d *device, cmid string, e *im.Error) {
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

// Package acl is the Tern access-control hook. It is the only hook that
// answers OnACLCheck, deciding with topics.Policy (deny by default). It
// also keeps wills inside the ACL (mochi does not check them) and makes
// sure no publish into the im/ tree is ever routed as-is: upstream
// commands are consumed by the hooks registered before this one, and
// whatever they leave is dropped here.
package acl

import (
	"bytes"
	"net"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/metrics"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// Options configures the hook.
type Options struct {
	Policy   *topics.Policy
	Sessions *session.Registry
	Metrics  *metrics.Metrics
	// Audit counts denials (acl.deny, one line per client, topic and
	// operation a minute); nil means audit.Discard.
	Audit audit.Logger
}

// Hook enforces the ACL.
type Hook struct {
	mqtt.HookBase
	opts *Options
}

var _ mqtt.Hook = (*Hook)(nil)

// ID returns the hook id.
func (h *Hook) ID() string { return "tern-acl" }

// Provides lists the events handled.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnACLCheck, mqtt.OnWill, mqtt.OnPublish}, []byte{b})
}

// Init takes *Options.
func (h *Hook) Init(config any) error {
	o, ok := config.(*Options)
	if !ok || o == nil || o.Policy == nil || o.Sessions == nil || o.Metrics == nil {
		return mqtt.ErrInvalidConfigType
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	h.opts = o
	return nil
}

// OnACLCheck decides publish (write) and subscribe/deliver (read) access.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if id, ok := h.identity(cl); ok && h.opts.Policy.Allow(id, topic, write) {
		return true
	}
	op := "subscribe"
	if write {
		op = "publish"
	}
	h.opts.Metrics.ACLDenials.WithLabelValues(op).Inc()
	h.Log.Debug("acl denied", "client", cl.ID, "topic", topic, "op", op)
	e := audit.Entry{Type: audit.ACLDeny, UID: string(cl.Properties.Username), IP: cl.Net.Remote, Target: topic, Reason: op}
	if uid, did, err := topics.ParseClientID(cl.ID); err == nil && uid == e.UID {
		e.DID = did
	}
	if host, _, err := net.SplitHostPort(e.IP); err == nil {
		e.IP = host
	}
	h.opts.Audit.Count(e)
	return false
}

// identity is who cl is: its live session, or, for a persistent session
// whose connection is gone (mochi still delivers to it, queueing QoS > 0
// for its return), the identity it authenticated with, which mochi keeps
// on the client: anonymous without a user name, else {uid}.{did}. Admin
// rights are never assumed offline.
func (h *Hook) identity(cl *mqtt.Client) (topics.Identity, bool) {
	if s, ok := h.opts.Sessions.Get(cl); ok {
		return s.Identity, true
	}
	if !cl.Closed() {
		return topics.Identity{}, false // not (yet) authenticated
	}
	user := string(cl.Properties.Username)
	if user == "" {
		return topics.Identity{Anonymous: true}, true
	}
	uid, did, err := topics.ParseClientID(cl.ID)
	if err != nil || uid != user {
		return topics.Identity{}, false
	}
	return topics.Identity{UID: uid, DID: did}, true
}

// OnWill keeps a will inside the ACL and out of the retained store. Inside
// im/ only the device's own presence will stands, never retained (the
// presence hook honours it); a will on a plain-MQTT topic the device may
// publish to stands as a publish there would. Any other will is rewritten
// to $im/will/{uid}/{did}, where nobody can subscribe (PROTOCOL §3), and
// never retained: a retained will on the device's own upstream topics
// would otherwise be kept in memory for good.
func (h *Hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	s, ok := h.opts.Sessions.Get(cl)
	if ok && h.opts.Policy.Allow(s.Identity, will.TopicName, true) {
		if !strings.HasPrefix(will.TopicName, topics.Root) {
			return will, nil
		}
		if !s.Anonymous && will.TopicName == topics.Up(s.UID, s.DID, topics.UpPres) {
			will.Retain = false
			return will, nil
		}
	}
	uid, did := "anonymous", "unknown"
	if ok && !s.Anonymous {
		uid, did = s.UID, s.DID
	}
	will.TopicName = topics.Will(uid, did)
	will.Retain = false
	h.Log.Debug("will rewritten", "client", cl.ID, "topic", will.TopicName)
	return will, nil
}

// OnPublish drops any client publish into im/ or under $ that no earlier
// hook consumed: the server is the only publisher downstream, upstream
// commands are never routed as-is, and $ topics belong to the server.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if t := pk.TopicName; strings.HasPrefix(t, topics.Root) || strings.HasPrefix(t, "$") {
		h.Log.Debug("upstream publish not consumed", "client", cl.ID, "topic", t)
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// Package service runs the IM operations of the protocol (PROTOCOL §5–§9)
// over the im ports: one small handler per msg op, per RPC op and per
// group op, registered in tables, with the domain's rules and named
// errors. It knows neither MQTT nor Badger: hooks/messaging decodes the
// upstream payloads, calls a Service and publishes what it answers;
// internal/store implements the ports. docs/architecture.md has the path
// of one message.
package service

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/relations"
)

// Policy is the configuration of the IM rules (internal/config's im
// section owns the defaults): the limits must be positive.
type Policy struct {
	// Epoch is this run's epoch, reported in hello.
	Epoch uint64
	// EpochNow, when set, is asked for the epoch instead (a cluster's
	// epoch changes while a node runs: im/sys/server).
	EpochNow func() uint64
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
}

// Options configures a Service. Store, Commits, Stop and Relations are
// required.
type Options struct {
	Policy
	// Store is the IM core's storage, every port of it.
	Store im.Store
	// Commits is the stream Store publishes committed appends on: the
	// service reserves a slot before each append (backpressure).
	Commits *im.CommitStream
	// Stop ends waits for room in Commits (shutdown: 503).
	Stop      <-chan struct{}
	Relations *relations.Relations
	// Announce, if set, is told each group whose record changed (the
	// MQTT adapter retains its im/g/{gid}/meta).
	Announce func(im.Group)
	// Ops are RPC ops of other features (file.* of the file hook), added
	// to the op table; a name the table has already is an error.
	Ops map[string]Op
	// Files, if set, checks and fills in the attachments of sends and
	// keeps the files' references (PROTOCOL §11); without it a send with
	// attachments is refused (501).
	Files Files
	// Search answers the search RPC (§15); nil answers it 501.
	Search im.Searcher
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Content, if set, judges the text of every send and edit that is
	// not end-to-end encrypted (PROTOCOL §16).
	Content im.ContentPolicy
	// Compliance is the store's holds, per-conversation retention and
	// export (conv.set, deletes under a hold). Without it nothing is held
	// and conv.set answers 501.
	Compliance im.Compliance
	// Audit records deletes, content-policy hits and retention changes;
	// nil means audit.Discard.
	Audit audit.Logger
}

func (o *Options) check() error {
	if o.Store == nil || o.Commits == nil || o.Stop == nil || o.Relations == nil {
		return errors.New("service: Store, Commits, Stop and Relations are required")
	}
	var errs []error
	for _, x := range []struct {
		name string
		ok   bool
	}{
		{"MaxPacket", o.MaxPacket > 0}, {"MaxBody", o.MaxBody > 0}, {"RateBurst", o.RateBurst > 0},
		{"RatePerSec", o.RatePerSec > 0}, {"MaxGroupMembers", o.MaxGroupMembers > 0},
	} {
		if !x.ok {
			errs = append(errs, fmt.Errorf("service: %s must be positive", x.name))
		}
	}
	return errors.Join(errs...)
}

// Service runs the IM operations. It is safe for concurrent use.
type Service struct {
	o      Options
	rate   *im.Limiter
	rpc    *rpcLimits
	typing *im.TypingGate
	peers  *relations.Peers
	users  stripes
	groups stripes
}

// New returns a Service over o.
func New(o Options) (*Service, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Announce == nil {
		o.Announce = func(im.Group) {}
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	for name := range o.Ops {
		if _, ok := rpcOps[name]; ok {
			return nil, fmt.Errorf("service: op %s is in the table already", name)
		}
	}
	s := &Service{
		o:      o,
		rate:   im.NewLimiter(o.RateBurst, o.RatePerSec, o.Now),
		rpc:    newRPCLimits(o.Limits, o.Now),
		typing: im.NewTypingGate(2*time.Second, o.Now),
		peers:  relations.NewPeers(o.Now),
	}
	o.Relations.OnUserDeleted(s.peers.ForgetUser)
	return s, nil
}

// Device is the caller of an operation: who it is, what it negotiated,
// and how the adapter reaches it.
type Device struct {
	UID, DID string
	Prefs    im.Prefs
	// Conn, if set, is the device's connection.
	Conn Conn
}

// Conn is what the service asks of the adapter about the calling device.
type Conn interface {
	// SetPrefs records what hello negotiated.
	SetPrefs(im.Prefs)
	// Resend sends the device an event again: the original of a command
	// it repeated.
	Resend(*im.Event)
}

func (d *Device) setPrefs(p im.Prefs) {
	d.Prefs = p
	if d.Conn != nil {
		d.Conn.SetPrefs(p)
	}
}

func (d *Device) resend(ev *im.Event) {
	if d.Conn != nil {
		d.Conn.Resend(ev)
	}
}

// LimitFor is the largest payload that fits a device's maxPkt on topic,
// with a broker maximum of maxPacket.
func LimitFor(maxPacket int, p im.Prefs, topic string) int {
	limit := maxPacket
	if p.MaxPkt > 0 && p.MaxPkt < limit {
		limit = p.MaxPkt
	}
	// Fixed header (≤ 5), topic length and name, packet id, properties.
	return limit - len(topic) - 16
}

func (s *Service) limitFor(p im.Prefs, topic string) int { return LimitFor(s.o.MaxPacket, p, topic) }

// Truncate encodes ev in the device's encoding, cut to limit bytes with
// trunc:true when it does not fit (msg.get returns the whole event).
func Truncate(ev *im.Event, cbor bool, limit int) ([]byte, error) {
	b, err := codec.Encode(ev, cbor)
	if err != nil || len(b) <= limit {
		return b, err
	}
	e := *ev
	e.Trunc = true
	for range 3 {
		over := len(b) - limit
		keep := len(e.B) - over - 32
		if keep <= 0 {
			e.B, e.Att, e.E2E, e.Mn = "", nil, nil, nil
		} else {
			e.B = codec.CutUTF8(e.B, keep)
		}
		if b, err = codec.Encode(&e, cbor); err != nil || len(b) <= limit {
			return b, err
		}
	}
	return b, nil // as small as it gets; the broker drops it if still too big
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

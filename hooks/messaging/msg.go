package messaging

import (
	"errors"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Limits of upstream commands beyond the body size: the upstream schema's
// (codec.Up.Check), which fit the limits stored events are read with.
const (
	maxCMID    = codec.MaxCMID
	maxCT      = codec.MaxCT
	maxReactK  = codec.MaxReactK
	maxMention = codec.MaxMentions
	maxAtt     = codec.MaxAtt
	maxTTL     = codec.MaxTTL
	// maxMarkFanout: in larger groups read/delivered marks go only to the
	// marking user's own stream (docs/protocol.md).
	maxMarkFanout = 256
	// payloadSlack is what an upstream payload may carry beyond the body.
	payloadSlack = 8 << 10
	// maxSmallPayload bounds rcpt and typ payloads.
	maxSmallPayload = 1 << 10
)

// conv is what a user may do in a conversation.
type conv struct {
	cv      string
	gid     string   // group conversations
	members []string // current members: the recipients
	member  bool     // uid is a current member
	role    string
	window  im.Window // what uid may read
}

// convFor resolves cv for uid: 400 when malformed, 404 when the group is
// unknown, 403 when uid was never in it.
func (h *Hook) convFor(uid, cv string) (*conv, error) {
	a, b, gid, ok := im.ParseConv(cv)
	switch {
	case !ok:
		return nil, im.ErrBadConv
	case gid == "":
		if topics.CheckUID(a) != nil || topics.CheckUID(b) != nil {
			return nil, im.ErrBadConv
		}
		if uid != a && uid != b {
			return nil, im.ErrNotMember
		}
		return &conv{cv: cv, members: []string{a, b}, member: true, window: im.Open}, nil
	}
	if topics.CheckGID(gid) != nil {
		return nil, im.ErrBadConv
	}
	if _, err := h.opts.Store.Group(gid); err != nil {
		if errors.Is(err, im.ErrNotFound) {
			return nil, im.ErrUnknownGroup
		}
		return nil, err
	}
	order, recs, err := h.opts.Relations.Members(gid)
	if err != nil {
		return nil, err
	}
	c := &conv{cv: cv, gid: gid, members: order}
	if r, ok := recs[uid]; ok && r.Current() {
		c.member, c.role, c.window = true, r.Role, r.Window()
		return c, nil
	}
	r, err := h.opts.Store.Member(gid, uid)
	if errors.Is(err, im.ErrNotFound) {
		return nil, im.ErrNotMember
	}
	if err != nil {
		return nil, err
	}
	c.window = r.Window()
	return c, nil
}

// readable is convFor for reading cv's events (history, msg.get,
// conv.list, edit/del/react targets): in a DM, a uid whose earlier account
// was deleted reads only the seqs after that account's floor.
func (h *Hook) readable(uid, cv string) (*conv, error) {
	c, err := h.convFor(uid, cv)
	if err != nil || c.gid != "" {
		return c, err
	}
	floor, err := h.opts.Store.DMFloor(cv, uid)
	if err != nil || floor == 0 {
		return c, err
	}
	last, err := h.opts.Store.ConvSeq(cv)
	if err != nil {
		return nil, err
	}
	if last <= floor { // nothing since the earlier account was deleted
		return nil, im.ErrUnknownConv
	}
	c.window.From = max(c.window.From, floor+1)
	return c, nil
}

// memberOf is convFor for commands that need a current member.
func (h *Hook) memberOf(uid, cv string) (*conv, error) {
	c, err := h.convFor(uid, cv)
	if err != nil {
		return nil, err
	}
	if !c.member {
		return nil, im.ErrNotMember
	}
	return c, nil
}

// writable resolves the conversation a send goes to and checks that uid
// may write there: member, not blocked, DM policy.
func (h *Hook) writable(uid, to string) (*conv, error) {
	cv := to
	if !strings.HasPrefix(to, "d:") && !strings.HasPrefix(to, "g:") {
		if topics.CheckUID(to) != nil {
			return nil, im.ErrBadRecipient
		}
		if to == uid {
			return nil, im.ErrSelfMessage
		}
		cv = im.DMConv(uid, to)
	}
	c, err := h.memberOf(uid, cv)
	if err != nil || c.gid != "" {
		return c, err
	}
	other := c.members[0]
	if other == uid {
		other = c.members[1]
	}
	p, ok := h.peers.Get(uid, other)
	if !ok {
		var err error
		if p.Exists, p.Blocked, err = h.opts.Store.DMPeer(uid, other); err != nil {
			return nil, err
		}
		h.peers.Put(uid, other, p)
	}
	switch {
	case !p.Exists:
		return nil, im.ErrUnknownUser
	case p.Blocked:
		return nil, im.ErrBlocked
	}
	if h.opts.DMPolicy == "contacts" && !h.opts.Relations.Visible(other, uid) {
		return nil, im.ErrNotContact
	}
	return c, nil
}

// msgOps are the ops of an upstream msg command.
var msgOps = map[string]func(h *Hook, d *device, up *codec.Up) error{
	"":      (*Hook).send,
	"send":  (*Hook).send,
	"edit":  (*Hook).edit,
	"del":   (*Hook).del,
	"react": (*Hook).react,
}

// onMsg handles an upstream msg command; cmid is returned for the err
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
	if !h.rate.Allow(d.uid + "." + d.did) {
		return up.CMID, im.ErrRateLimited
	}
	if up.CMID == "" || len(up.CMID) > maxCMID {
		return up.CMID, im.ErrBadCMID
	}
	if len(up.B) > h.opts.MaxBody {
		return up.CMID, im.ErrBodyTooBig
	}
	if err := up.Check(h.opts.MaxBody); err != nil {
		return up.CMID, im.ErrSchema.WithMsg(err.Error())
	}
	// A resend of a command already done: re-send the original event to
	// this device only. Sends skip this read: the Log checks the dedupe
	// key inside its commit anyway and hands back the original
	// (Append.Dup), so the hot path pays no extra read.
	if up.Op != "" && up.Op != "send" {
		if ev, err := h.opts.Store.Deduped(d.uid, d.did, up.CMID); err == nil {
			h.sendEvent(d, &ev)
			return up.CMID, nil
		} else if errors.Is(err, im.ErrGone) {
			return up.CMID, nil // done, and its event trimmed since: just ack
		} else if !errors.Is(err, im.ErrNotFound) {
			return up.CMID, err
		}
	}
	op, ok := msgOps[up.Op]
	if !ok {
		return up.CMID, im.ErrUnknownOp
	}
	return up.CMID, op(h, d, &up)
}

func checkSend(up *codec.Up) error {
	switch {
	case up.To == "":
		return im.ErrMissingTo
	case up.B == "" && len(up.Att) == 0:
		return im.ErrMissingBody
	case len(up.CT) > maxCT:
		return im.ErrBadCT
	case up.TTL < 0 || up.TTL > maxTTL:
		return im.ErrBadTTL
	case len(up.Mn) > maxMention || len(up.Att) > maxAtt:
		return im.ErrTooMany
	}
	for _, m := range up.Mn {
		if topics.CheckUID(m) != nil {
			return im.ErrBadMention
		}
	}
	return nil
}

func (h *Hook) send(d *device, up *codec.Up) error {
	if err := checkSend(up); err != nil {
		return err
	}
	if gid, ok := strings.CutPrefix(up.To, "g:"); ok {
		defer h.groups.rlock(gid)()
	}
	c, err := h.writable(d.uid, up.To)
	if err != nil {
		return err
	}
	for _, id := range []*ulid.ULID{up.Re, up.Th} {
		if id == nil {
			continue
		}
		ev, err := h.opts.Store.EventByID(*id)
		if errors.Is(err, im.ErrNotFound) || (err == nil && ev.CV != c.cv) {
			return im.ErrUnknownMessage
		}
		if err != nil {
			return err
		}
	}
	ct := up.CT
	if ct == "" {
		ct = "text/plain"
	}
	a := &im.Append{
		CV: c.cv, To: c.members, UID: d.uid, DID: d.did, CMID: up.CMID,
		TTL: time.Duration(up.TTL) * time.Second,
		Event: im.Event{
			T: im.TMsg, From: d.uid, FD: d.did, CMID: up.CMID, CT: ct, B: up.B,
			Re: up.Re, Th: up.Th, Att: up.Att, Mn: up.Mn, TTL: up.TTL, E2E: up.E2E, CTS: up.CTS,
		},
	}
	if c.gid == "" {
		a.UserConvs = []im.UserConv{{UID: c.members[0], CV: c.cv}, {UID: c.members[1], CV: c.cv}}
	}
	return h.append(d, a)
}

// append reserves room in the commit stream (waiting while delivery is
// behind: backpressure before the PUBACK), commits a, and re-sends the
// original event on a dedupe hit.
func (h *Hook) append(d *device, a *im.Append) error {
	if err := h.opts.Commits.Reserve(h.dl.quit, a); err != nil {
		return err
	}
	err := h.opts.Store.Append(a)
	h.opts.Commits.Release(a) // a no-op once the Log published it
	if err != nil {
		return err
	}
	if a.Dup != nil && d != nil {
		h.sendEvent(d, a.Dup)
	}
	return nil
}

// changeOf is an edit, del or react on its way: the message it changes,
// the conversation (the caller is a current member), the lifetime the
// change inherits from a disappearing message, and the group stripe held.
type changeOf struct {
	target im.Event
	c      *conv
	ttl    time.Duration
	unlock func()
}

// resolve finds the message up changes and checks the caller may see it.
// On success the caller must call unlock.
func (h *Hook) resolve(d *device, up *codec.Up) (*changeOf, error) {
	if up.ID == nil {
		return nil, im.ErrMissingID
	}
	t, err := h.opts.Store.EventByID(*up.ID)
	if errors.Is(err, im.ErrNotFound) {
		return nil, im.ErrUnknownMessage
	}
	if err != nil {
		return nil, err
	}
	if t.T != im.TMsg {
		return nil, im.ErrNotMessage
	}
	x := &changeOf{target: t, unlock: func() {}}
	if gid, ok := strings.CutPrefix(t.CV, "g:"); ok {
		x.unlock = h.groups.rlock(gid)
	}
	if err := h.within(d, x); err != nil {
		x.unlock()
		return nil, err
	}
	return x, nil
}

// within resolves x's conversation for the caller and the inherited ttl.
func (h *Hook) within(d *device, x *changeOf) error {
	c, err := h.readable(d.uid, x.target.CV)
	if err != nil {
		return err
	}
	if !c.member {
		return im.ErrNotMember
	}
	if x.target.Seq < c.window.From {
		return im.ErrUnknownMessage
	}
	x.c = c
	if t := x.target; t.TTL > 0 {
		x.ttl = time.UnixMilli(t.TS).Add(time.Duration(t.TTL) * time.Second).Sub(h.opts.Now())
		if x.ttl <= 0 {
			return im.ErrUnknownMessage
		}
	}
	return nil
}

// append builds the append of the change with event ev.
func (x *changeOf) append(d *device, up *codec.Up, ev im.Event) *im.Append {
	id := *up.ID
	ev.From, ev.FD, ev.CMID, ev.Tgt = d.uid, d.did, up.CMID, &id
	return &im.Append{CV: x.c.cv, To: x.c.members, UID: d.uid, DID: d.did, CMID: up.CMID, TTL: x.ttl, Event: ev}
}

func (h *Hook) edit(d *device, up *codec.Up) error {
	x, err := h.resolve(d, up)
	if err != nil {
		return err
	}
	defer x.unlock()
	switch {
	case x.target.From != d.uid:
		return im.ErrNotAuthor
	case up.B == "":
		return im.ErrMissingBody
	}
	return h.append(d, x.append(d, up, im.Event{T: im.TEdit, B: up.B}))
}

func (h *Hook) del(d *device, up *codec.Up) error {
	x, err := h.resolve(d, up)
	if err != nil {
		return err
	}
	defer x.unlock()
	if x.target.From != d.uid && x.c.role != im.RoleOwner && x.c.role != im.RoleAdmin {
		return im.ErrNotAuthor
	}
	return h.append(d, x.append(d, up, im.Event{T: im.TDel}))
}

func (h *Hook) react(d *device, up *codec.Up) error {
	x, err := h.resolve(d, up)
	if err != nil {
		return err
	}
	defer x.unlock()
	if up.K == "" || len(up.K) > maxReactK {
		return im.ErrBadReaction
	}
	defer h.users.lock(d.uid)()
	on, err := h.opts.Store.Reacted(*up.ID, d.uid, up.K)
	if err != nil {
		return err
	}
	a := x.append(d, up, im.Event{T: im.TReact, K: up.K, Rm: on})
	a.Reacts = []im.React{{ID: *up.ID, UID: d.uid, K: up.K, On: !on}}
	return h.append(d, a)
}

// onRcpt handles a cumulative read/delivered marker (§6).
func (h *Hook) onRcpt(d *device, payload []byte) error {
	if len(payload) > maxSmallPayload {
		return im.ErrPayloadTooBig
	}
	var r codec.Rcpt
	if err := codec.Decode(payload, &r); err != nil {
		return im.ErrMalformed
	}
	if r.K != "read" && r.K != "dlv" {
		return im.ErrBadMarkKind
	}
	if r.Upto == 0 {
		return im.ErrMissingUpto
	}
	c, err := h.memberOf(d.uid, r.CV)
	if err != nil {
		return err
	}
	last, err := h.opts.Store.ConvSeq(c.cv)
	if err != nil {
		return err
	}
	if last == 0 {
		return im.ErrUnknownConv
	}
	upto := min(r.Upto, last)
	defer h.users.lock(d.uid)()
	cur, err := h.opts.Store.Marker(c.cv, d.uid, r.K)
	if err != nil {
		return err
	}
	if upto <= cur {
		return nil // never backwards; not an error
	}
	to := c.members
	if len(to) > maxMarkFanout {
		to = []string{d.uid}
	}
	return h.append(nil, &im.Append{
		CV: c.cv, Aux: true, To: to, QuietUID: d.uid, QuietDID: d.did,
		Event:   im.Event{T: im.TMark, From: d.uid, K: r.K, Upto: upto},
		Markers: []im.Marker{{CV: c.cv, UID: d.uid, K: r.K, Upto: upto}},
	})
}

// onTyp relays a typing state to the other members' devices (§7).
func (h *Hook) onTyp(d *device, payload []byte) error {
	if len(payload) > maxSmallPayload {
		return im.ErrPayloadTooBig
	}
	var t codec.Typ
	if err := codec.Decode(payload, &t); err != nil {
		return im.ErrMalformed
	}
	if t.S != "c" && t.S != "p" {
		return im.ErrBadTypState
	}
	c, err := h.memberOf(d.uid, t.CV)
	if err != nil {
		return err
	}
	if !h.typing.Allow(d.uid, c.cv) {
		return nil // rate-limited silently: typing is best effort
	}
	ev := im.Event{T: im.TTyp, CV: c.cv, From: d.uid, S: t.S, TTL: 8}
	var enc encodings
	for _, uid := range c.members {
		if uid == d.uid {
			continue
		}
		for _, s := range h.opts.Sessions.Devices(uid) {
			p := s.Prefs()
			if !p.Typing {
				continue
			}
			b, err := enc.get(&ev, p.CBOR)
			if err != nil {
				return err
			}
			h.publish(topics.Device(uid, s.DID, topics.ChanEph), b, 0, nil)
		}
	}
	return nil
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

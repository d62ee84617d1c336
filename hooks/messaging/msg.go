package messaging

import (
	"errors"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/store"
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
)

// conv is what a user may do in a conversation.
type conv struct {
	cv      string
	gid     string   // group conversations
	members []string // current members: the recipients
	member  bool     // uid is a current member
	role    string
	lo, hi  uint64 // seq range uid may read; hi 0 = open
}

// dmCV returns the DM conversation of two users.
func dmCV(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

// convFor resolves cv for uid: 400 when malformed, 404 when the group is
// unknown, 403 when uid was never in it.
func (h *Hook) convFor(uid, cv string) (*conv, *apiError) {
	switch {
	case strings.HasPrefix(cv, "d:"):
		a, b, ok := strings.Cut(cv[2:], ":")
		if !ok || topics.CheckUID(a) != nil || topics.CheckUID(b) != nil || a >= b {
			return nil, errf(400, "bad conversation id")
		}
		if uid != a && uid != b {
			return nil, errf(403, "not a member")
		}
		return &conv{cv: cv, members: []string{a, b}, member: true, lo: 1}, nil
	case strings.HasPrefix(cv, "g:"):
		gid := cv[2:]
		if topics.CheckGID(gid) != nil {
			return nil, errf(400, "bad conversation id")
		}
		if _, err := h.opts.Store.Group(gid); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, errf(404, "unknown group")
			}
			return nil, fault(err)
		}
		order, recs, err := h.opts.Relations.members(gid)
		if err != nil {
			return nil, fault(err)
		}
		c := &conv{cv: cv, gid: gid, members: order}
		if r, ok := recs[uid]; ok && r.Current() {
			c.member, c.role, c.lo = true, r.Role, r.From
			return c, nil
		}
		r, err := h.opts.Store.Member(gid, uid)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errf(403, "not a member")
		}
		if err != nil {
			return nil, fault(err)
		}
		c.lo, c.hi = r.From, r.To
		if c.hi == 0 { // cannot happen for a past member; be safe
			c.hi = c.lo
		}
		return c, nil
	}
	return nil, errf(400, "bad conversation id")
}

// readable is convFor for reading cv's events (history, msg.get,
// conv.list, edit/del/react targets): in a DM, a uid whose earlier account
// was deleted reads only the seqs after that account's floor.
func (h *Hook) readable(uid, cv string) (*conv, *apiError) {
	c, e := h.convFor(uid, cv)
	if e != nil || c.gid != "" {
		return c, e
	}
	floor, err := h.opts.Store.DMFloor(cv, uid)
	if err != nil {
		return nil, fault(err)
	}
	if floor == 0 {
		return c, nil
	}
	last, err := h.opts.Store.ConvSeq(cv)
	if err != nil {
		return nil, fault(err)
	}
	if last <= floor { // nothing since the earlier account was deleted
		return nil, errf(404, "unknown conversation")
	}
	c.lo = max(c.lo, floor+1)
	return c, nil
}

// writable resolves the conversation a send goes to and checks that uid
// may write there: member, not blocked, DM policy.
func (h *Hook) writable(uid, to string) (*conv, *apiError) {
	cv := to
	if !strings.HasPrefix(to, "d:") && !strings.HasPrefix(to, "g:") {
		if topics.CheckUID(to) != nil {
			return nil, errf(400, "bad recipient")
		}
		if to == uid {
			return nil, errf(400, "cannot message yourself")
		}
		cv = dmCV(uid, to)
	}
	c, e := h.convFor(uid, cv)
	if e != nil {
		return nil, e
	}
	if !c.member {
		return nil, errf(403, "not a member")
	}
	if c.gid != "" {
		return c, nil
	}
	other := c.members[0]
	if other == uid {
		other = c.members[1]
	}
	p, ok := h.peers.get(uid, other)
	if !ok {
		var err error
		if p.exists, p.blocked, err = h.opts.Store.DMPeer(uid, other); err != nil {
			return nil, fault(err)
		}
		h.peers.put(uid, other, p)
	}
	switch {
	case !p.exists:
		return nil, errf(404, "unknown user")
	case p.blocked:
		return nil, errf(403, "blocked")
	}
	if h.opts.DMPolicy == "contacts" && !h.opts.Relations.Visible(other, uid) {
		return nil, errf(403, "not a contact")
	}
	return c, nil
}

// onMsg handles an upstream msg command; cmid is returned for the err
// event.
func (h *Hook) onMsg(d *device, payload []byte) (string, *apiError) {
	if len(payload) > h.opts.MaxBody+payloadSlack {
		return "", errf(413, "payload too large")
	}
	var up codec.Up
	if err := codec.Decode(payload, &up); err != nil {
		if f := codec.Field(err); f != "" {
			return "", errf(400, "malformed payload: bad "+f)
		}
		return "", errf(400, "malformed payload")
	}
	if !h.rate.allow(d.uid + "." + d.did) {
		return up.CMID, errf(429, "rate limited")
	}
	if up.CMID == "" || len(up.CMID) > maxCMID {
		return up.CMID, errf(400, "cmid must be 1 to 32 bytes")
	}
	if len(up.B) > h.opts.MaxBody {
		return up.CMID, errf(413, "body too large")
	}
	if err := up.Check(h.opts.MaxBody); err != nil {
		return up.CMID, errf(400, err.Error())
	}
	// A resend of a command already done: re-send the original event to
	// this device only. Sends skip this read: the sequencer checks the
	// dedupe key inside its batch transaction anyway and hands back the
	// original (Append.Dup), so the hot path pays no extra Badger read.
	if up.Op != "" && up.Op != "send" {
		if ev, err := h.opts.Store.Deduped(d.uid, d.did, up.CMID); err == nil {
			h.sendEvent(d.uid, d.did, d.pref, &ev)
			return up.CMID, nil
		} else if errors.Is(err, store.ErrGone) {
			return up.CMID, nil // done, and its event trimmed since: just ack
		} else if !errors.Is(err, store.ErrNotFound) {
			return up.CMID, fault(err)
		}
	}
	var e *apiError
	switch up.Op {
	case "", "send":
		e = h.send(d, &up)
	case "edit", "del", "react":
		e = h.change(d, &up)
	default:
		e = errf(400, "unknown op")
	}
	return up.CMID, e
}

func (h *Hook) send(d *device, up *codec.Up) *apiError {
	switch {
	case up.To == "":
		return errf(400, "missing to")
	case up.B == "" && len(up.Att) == 0:
		return errf(400, "missing body")
	case len(up.CT) > maxCT:
		return errf(400, "bad ct")
	case up.TTL < 0 || up.TTL > maxTTL:
		return errf(400, "bad ttl")
	case len(up.Mn) > maxMention || len(up.Att) > maxAtt:
		return errf(400, "too many mentions or attachments")
	}
	for _, m := range up.Mn {
		if topics.CheckUID(m) != nil {
			return errf(400, "bad mention")
		}
	}
	if gid, ok := strings.CutPrefix(up.To, "g:"); ok {
		defer h.groups.rlock(gid)()
	}
	c, e := h.writable(d.uid, up.To)
	if e != nil {
		return e
	}
	for _, id := range []*ulid.ULID{up.Re, up.Th} {
		if id == nil {
			continue
		}
		ev, err := h.opts.Store.EventByID(*id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && ev.CV != c.cv) {
			return errf(404, "unknown message")
		}
		if err != nil {
			return fault(err)
		}
	}
	ct := up.CT
	if ct == "" {
		ct = "text/plain"
	}
	a := &store.Append{
		CV: c.cv, To: c.members, UID: d.uid, DID: d.did, CMID: up.CMID,
		TTL: time.Duration(up.TTL) * time.Second,
		Event: codec.Event{
			T: codec.TMsg, From: d.uid, FD: d.did, CMID: up.CMID, CT: ct, B: up.B,
			Re: up.Re, Th: up.Th, Att: up.Att, Mn: up.Mn, TTL: up.TTL, E2E: up.E2E, CTS: up.CTS,
		},
	}
	if c.gid == "" {
		a.UserConvs = []store.UserConv{{UID: c.members[0], CV: c.cv}, {UID: c.members[1], CV: c.cv}}
	}
	return h.append(d, a, "", "")
}

// append commits a, queues its live delivery (skipping skipUID/skipDID)
// and handles a dedupe hit.
func (h *Hook) append(d *device, a *store.Append, skipUID, skipDID string) *apiError {
	a.Committed = func(a *store.Append) { h.dl.committed(a, skipUID, skipDID) }
	if err := h.opts.Store.Append(a); err != nil {
		return fault(err)
	}
	if a.Dup != nil && d != nil {
		h.sendEvent(d.uid, d.did, d.pref, a.Dup)
	}
	return nil
}

// change handles edit, del and react.
func (h *Hook) change(d *device, up *codec.Up) *apiError {
	if up.ID == nil {
		return errf(400, "missing id")
	}
	target, err := h.opts.Store.EventByID(*up.ID)
	if errors.Is(err, store.ErrNotFound) {
		return errf(404, "unknown message")
	}
	if err != nil {
		return fault(err)
	}
	if target.T != codec.TMsg {
		return errf(400, "not a message")
	}
	if gid, ok := strings.CutPrefix(target.CV, "g:"); ok {
		defer h.groups.rlock(gid)()
	}
	c, e := h.readable(d.uid, target.CV)
	if e != nil {
		return e
	}
	if !c.member {
		return errf(403, "not a member")
	}
	if target.Seq < c.lo {
		return errf(404, "unknown message")
	}
	var ttl time.Duration
	if target.TTL > 0 {
		ttl = time.UnixMilli(target.TS).Add(time.Duration(target.TTL) * time.Second).Sub(h.opts.Now())
		if ttl <= 0 {
			return errf(404, "unknown message")
		}
	}
	id := *up.ID
	ev := codec.Event{From: d.uid, FD: d.did, CMID: up.CMID, Tgt: &id}
	a := &store.Append{CV: c.cv, To: c.members, UID: d.uid, DID: d.did, CMID: up.CMID, TTL: ttl}
	switch up.Op {
	case "edit":
		if target.From != d.uid {
			return errf(403, "not the author")
		}
		if up.B == "" {
			return errf(400, "missing body")
		}
		ev.T, ev.B = codec.TEdit, up.B
	case "del":
		if target.From != d.uid && c.role != "owner" && c.role != "admin" {
			return errf(403, "not the author")
		}
		ev.T = codec.TDel
	case "react":
		if up.K == "" || len(up.K) > maxReactK {
			return errf(400, "bad reaction")
		}
		defer h.users.lock(d.uid)()
		on, err := h.opts.Store.Reacted(id, d.uid, up.K)
		if err != nil {
			return fault(err)
		}
		ev.T, ev.K, ev.Rm = codec.TReact, up.K, on
		a.Reacts = []store.React{{ID: id, UID: d.uid, K: up.K, On: !on}}
	}
	a.Event = ev
	return h.append(d, a, "", "")
}

// onRcpt handles a cumulative read/delivered marker (§6).
func (h *Hook) onRcpt(d *device, payload []byte) *apiError {
	if len(payload) > 1<<10 {
		return errf(413, "payload too large")
	}
	var r codec.Rcpt
	if err := codec.Decode(payload, &r); err != nil {
		return errf(400, "malformed payload")
	}
	if r.K != "read" && r.K != "dlv" {
		return errf(400, "k must be read or dlv")
	}
	if r.Upto == 0 {
		return errf(400, "missing upto")
	}
	c, e := h.convFor(d.uid, r.CV)
	if e != nil {
		return e
	}
	if !c.member {
		return errf(403, "not a member")
	}
	last, err := h.opts.Store.ConvSeq(c.cv)
	if err != nil {
		return fault(err)
	}
	if last == 0 {
		return errf(404, "unknown conversation")
	}
	upto := min(r.Upto, last)
	defer h.users.lock(d.uid)()
	cur, err := h.opts.Store.Marker(c.cv, d.uid, r.K)
	if err != nil {
		return fault(err)
	}
	if upto <= cur {
		return nil // never backwards; not an error
	}
	to := c.members
	if len(to) > maxMarkFanout {
		to = []string{d.uid}
	}
	a := &store.Append{
		CV: c.cv, Aux: true, To: to,
		Event:   codec.Event{T: codec.TMark, From: d.uid, K: r.K, Upto: upto},
		Markers: []store.Marker{{CV: c.cv, UID: d.uid, K: r.K, Upto: upto}},
	}
	return h.append(nil, a, d.uid, d.did)
}

// onTyp relays a typing state to the other members' devices (§7).
func (h *Hook) onTyp(d *device, payload []byte) *apiError {
	if len(payload) > 1<<10 {
		return errf(413, "payload too large")
	}
	var t codec.Typ
	if err := codec.Decode(payload, &t); err != nil {
		return errf(400, "malformed payload")
	}
	if t.S != "c" && t.S != "p" {
		return errf(400, "s must be c or p")
	}
	c, e := h.convFor(d.uid, t.CV)
	if e != nil {
		return e
	}
	if !c.member {
		return errf(403, "not a member")
	}
	if !h.typing.allow(d.uid, c.cv) {
		return nil // rate-limited silently: typing is best effort
	}
	ev := codec.Event{T: codec.TTyp, CV: c.cv, From: d.uid, S: t.S, TTL: 8}
	for _, uid := range c.members {
		if uid == d.uid {
			continue
		}
		for _, s := range h.opts.Sessions.Devices(uid) {
			p := s.Prefs()
			if !p.Typing {
				continue
			}
			b, err := codec.Encode(&ev, p.CBOR)
			if err != nil {
				return fault(err)
			}
			h.publish(topics.Device(uid, s.DID, topics.ChanEph), b, 0, nil)
		}
	}
	return nil
}

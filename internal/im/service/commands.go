package service

import (
	"errors"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// maxMarkFanout: in larger groups read/delivered marks go only to the
// marking user's own stream (docs/protocol.md). The limits of upstream
// commands are the upstream schema's (codec.Max*, codec.Up.Check), which
// fit the limits stored events are read with.
const maxMarkFanout = 256

// conv is what a user may do in a conversation.
type conv struct {
	cv      string
	gid     string   // group conversations
	members []string // current members: the recipients
	member  bool     // uid is a current member
	role    string
	window  im.Window // what uid may read
	// listed: a DM on both users' conversation lists, as far as the
	// peer cache knows (a send need not write the list entries again).
	listed bool
}

// convFor resolves cv for uid: 400 when malformed, 404 when the group is
// unknown, 403 when uid was never in it.
func (s *Service) convFor(uid, cv string) (*conv, error) {
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
	if _, err := s.o.Store.Group(gid); err != nil {
		if errors.Is(err, im.ErrNotFound) {
			return nil, im.ErrUnknownGroup
		}
		return nil, err
	}
	order, recs, err := s.o.Relations.Members(gid)
	if err != nil {
		return nil, err
	}
	c := &conv{cv: cv, gid: gid, members: order}
	if r, ok := recs[uid]; ok && r.Current() {
		c.member, c.role, c.window = true, r.Role, r.Window()
		return c, nil
	}
	r, err := s.o.Store.Member(gid, uid)
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
func (s *Service) readable(uid, cv string) (*conv, error) {
	c, err := s.convFor(uid, cv)
	if err != nil || c.gid != "" {
		return c, err
	}
	floor, err := s.o.Store.DMFloor(cv, uid)
	if err != nil || floor == 0 {
		return c, err
	}
	last, err := s.o.Store.ConvSeq(cv)
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
func (s *Service) memberOf(uid, cv string) (*conv, error) {
	c, err := s.convFor(uid, cv)
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
func (s *Service) writable(uid, to string) (*conv, error) {
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
	c, err := s.memberOf(uid, cv)
	if err != nil || c.gid != "" {
		return c, err
	}
	other := peerOf(c, uid)
	p, ok := s.peers.Get(uid, other)
	if !ok {
		var err error
		if p.Exists, p.Blocked, err = s.o.Store.DMPeer(uid, other); err != nil {
			return nil, err
		}
		s.peers.Put(uid, other, p)
	}
	switch {
	case !p.Exists:
		return nil, im.ErrUnknownUser
	case p.Blocked:
		return nil, im.ErrBlocked
	}
	c.listed = p.Listed
	if s.o.DMPolicy == "contacts" && !s.o.Relations.Visible(other, uid) {
		return nil, im.ErrNotContact
	}
	return c, nil
}

// peerOf is the other member of DM c.
func peerOf(c *conv, uid string) string {
	if c.members[0] == uid {
		return c.members[1]
	}
	return c.members[0]
}

// msgOps are the ops of an upstream msg command.
var msgOps = map[string]func(s *Service, d *Device, up *codec.Up) error{
	"":      (*Service).send,
	"send":  (*Service).send,
	"edit":  (*Service).edit,
	"del":   (*Service).del,
	"react": (*Service).react,
}

// Msg runs an upstream msg command (PROTOCOL §5): send, edit, del or
// react, after the per-device rate limit and the upstream schema. A
// repeat of a command already done re-sends the original event to the
// device (Conn.Resend) and succeeds.
func (s *Service) Msg(d *Device, up *codec.Up) error {
	if !s.rate.Allow(d.UID + "." + d.DID) {
		return im.ErrRateLimited
	}
	if up.CMID == "" || len(up.CMID) > codec.MaxCMID {
		return im.ErrBadCMID
	}
	if len(up.B) > s.o.MaxBody {
		return im.ErrBodyTooBig
	}
	if err := up.Check(s.o.MaxBody); err != nil {
		return im.ErrSchema.WithMsg(err.Error())
	}
	// A resend of a command already done: re-send the original event to
	// this device only. Sends skip this read: the Log checks the dedupe
	// key inside its commit anyway and hands back the original
	// (Append.Dup), so the hot path pays no extra read.
	if up.Op != "" && up.Op != "send" {
		if ev, err := s.o.Store.Deduped(d.UID, d.DID, up.CMID); err == nil {
			d.resend(&ev)
			return nil
		} else if errors.Is(err, im.ErrGone) {
			return nil // done, and its event trimmed since: just ack
		} else if !errors.Is(err, im.ErrNotFound) {
			return err
		}
	}
	op, ok := msgOps[up.Op]
	if !ok {
		return im.ErrUnknownOp
	}
	return op(s, d, up)
}

func checkSend(up *codec.Up) error {
	switch {
	case up.To == "":
		return im.ErrMissingTo
	case up.B == "" && len(up.Att) == 0:
		return im.ErrMissingBody
	case len(up.CT) > codec.MaxCT:
		return im.ErrBadCT
	case up.TTL < 0 || up.TTL > codec.MaxTTL:
		return im.ErrBadTTL
	case len(up.Mn) > codec.MaxMentions || len(up.Att) > codec.MaxAtt:
		return im.ErrTooMany
	}
	for _, m := range up.Mn {
		if topics.CheckUID(m) != nil {
			return im.ErrBadMention
		}
	}
	return nil
}

func (s *Service) send(d *Device, up *codec.Up) error {
	if err := checkSend(up); err != nil {
		return err
	}
	// The content policy runs before the group stripe is taken: its
	// webhook may take up to its timeout.
	v, err := s.inspect(d, sendConv(d.UID, up.To), up)
	if err != nil {
		return err
	}
	if gid, ok := strings.CutPrefix(up.To, "g:"); ok {
		defer s.groups.rlock(gid)()
	}
	c, err := s.writable(d.UID, up.To)
	if err != nil {
		return err
	}
	for _, id := range []*ulid.ULID{up.Re, up.Th} {
		if id == nil {
			continue
		}
		ev, err := s.o.Store.EventByID(*id)
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
	attached, err := s.attachments(d, up)
	if err != nil {
		return err
	}
	a := &im.Append{
		CV: c.cv, To: c.members, UID: d.UID, DID: d.DID, CMID: up.CMID,
		TTL: time.Duration(up.TTL) * time.Second,
		Event: im.Event{
			T: im.TMsg, From: d.UID, FD: d.DID, CMID: up.CMID, CT: ct, B: v.Body,
			Re: up.Re, Th: up.Th, Att: up.Att, Mn: up.Mn, TTL: up.TTL, E2E: up.E2E, CTS: up.CTS,
		},
	}
	if c.gid == "" && !c.listed {
		a.UserConvs = []im.UserConv{{UID: c.members[0], CV: c.cv}, {UID: c.members[1], CV: c.cv}}
	}
	err = s.append(d, a)
	if err == nil && len(a.UserConvs) > 0 {
		s.peers.Listed(d.UID, peerOf(c, d.UID))
	}
	if ferr := attached(a, err); err == nil {
		err = ferr
	}
	if err == nil {
		s.flagged(d, v, a)
	}
	return err
}

// append reserves room in the commit stream (waiting while delivery is
// behind: backpressure before the PUBACK), commits a, and re-sends the
// original event on a dedupe hit.
func (s *Service) append(d *Device, a *im.Append) error {
	if err := s.o.Commits.Reserve(s.o.Stop, a); err != nil {
		return err
	}
	err := s.o.Store.Append(a)
	s.o.Commits.Release(a) // a no-op once the Log published it
	if err != nil {
		return err
	}
	if a.Dup != nil && d != nil {
		d.resend(a.Dup)
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
func (s *Service) resolve(d *Device, up *codec.Up) (*changeOf, error) {
	if up.ID == nil {
		return nil, im.ErrMissingID
	}
	t, err := s.o.Store.EventByID(*up.ID)
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
		x.unlock = s.groups.rlock(gid)
	}
	if err := s.within(d, x); err != nil {
		x.unlock()
		return nil, err
	}
	return x, nil
}

// within resolves x's conversation for the caller and the inherited ttl.
func (s *Service) within(d *Device, x *changeOf) error {
	c, err := s.readable(d.UID, x.target.CV)
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
		x.ttl = time.UnixMilli(t.TS).Add(time.Duration(t.TTL) * time.Second).Sub(s.o.Now())
		if x.ttl <= 0 {
			return im.ErrUnknownMessage
		}
	}
	return nil
}

// append builds the append of the change with event ev.
func (x *changeOf) append(d *Device, up *codec.Up, ev im.Event) *im.Append {
	id := *up.ID
	ev.From, ev.FD, ev.CMID, ev.Tgt = d.UID, d.DID, up.CMID, &id
	return &im.Append{CV: x.c.cv, To: x.c.members, UID: d.UID, DID: d.DID, CMID: up.CMID, TTL: x.ttl, Event: ev}
}

func (s *Service) edit(d *Device, up *codec.Up) error {
	x, err := s.resolve(d, up)
	if err != nil {
		return err
	}
	defer x.unlock()
	switch {
	case x.target.Deleted:
		return im.ErrUnknownMessage
	case x.target.From != d.UID:
		return im.ErrNotAuthor
	case up.B == "":
		return im.ErrMissingBody
	}
	v, err := s.inspect(d, x.c.cv, up)
	if err != nil {
		return err
	}
	a := x.append(d, up, im.Event{T: im.TEdit, B: v.Body})
	if err := s.append(d, a); err != nil {
		return err
	}
	s.flagged(d, v, a)
	return nil
}

func (s *Service) del(d *Device, up *codec.Up) error {
	x, err := s.resolve(d, up)
	if err != nil {
		return err
	}
	defer x.unlock()
	if x.target.From != d.UID && x.c.role != im.RoleOwner && x.c.role != im.RoleAdmin {
		return im.ErrNotAuthor
	}
	// A delete purges the message's body and its edits' from the store,
	// unless a legal hold keeps them for export (users see a tombstone
	// either way).
	keep, err := s.held(&x.target)
	if err != nil {
		return err
	}
	a := x.append(d, up, im.Event{T: im.TDel})
	a.Purge = &im.Purge{ID: x.target.ID, Keep: keep}
	if err := s.append(d, a); err != nil || !a.Committed() {
		return err
	}
	reason := "purged"
	if keep {
		reason = "held"
	}
	s.o.Audit.Log(audit.Entry{Type: audit.MsgDelete, UID: d.UID, DID: d.DID, By: d.UID, OK: true, Reason: reason, Target: x.target.ID.String()})
	if keep {
		return nil // a held message keeps its files for export
	}
	// The message is deleted: its files lose its reference.
	return s.detach(&x.target)
}

func (s *Service) react(d *Device, up *codec.Up) error {
	x, err := s.resolve(d, up)
	if err != nil {
		return err
	}
	defer x.unlock()
	if up.K == "" || len(up.K) > codec.MaxReactK {
		return im.ErrBadReaction
	}
	defer s.users.lock(d.UID)()
	on, err := s.o.Store.Reacted(*up.ID, d.UID, up.K)
	if err != nil {
		return err
	}
	a := x.append(d, up, im.Event{T: im.TReact, K: up.K, Rm: on})
	a.Reacts = []im.React{{ID: *up.ID, UID: d.UID, K: up.K, On: !on}}
	return s.append(d, a)
}

// Rcpt runs a cumulative read/delivered marker (§6). Markers never go
// back; the marking device gets no copy.
func (s *Service) Rcpt(d *Device, r *codec.Rcpt) error {
	if r.K != "read" && r.K != "dlv" {
		return im.ErrBadMarkKind
	}
	if r.Upto == 0 {
		return im.ErrMissingUpto
	}
	c, err := s.memberOf(d.UID, r.CV)
	if err != nil {
		return err
	}
	last, err := s.o.Store.ConvSeq(c.cv)
	if err != nil {
		return err
	}
	if last == 0 {
		return im.ErrUnknownConv
	}
	upto := min(r.Upto, last)
	defer s.users.lock(d.UID)()
	cur, err := s.o.Store.Marker(c.cv, d.UID, r.K)
	if err != nil {
		return err
	}
	if upto <= cur {
		return nil // never backwards; not an error
	}
	to := c.members
	if len(to) > maxMarkFanout {
		to = []string{d.UID}
	}
	return s.append(nil, &im.Append{
		CV: c.cv, Aux: true, To: to, QuietUID: d.UID, QuietDID: d.DID,
		Event:   im.Event{T: im.TMark, From: d.UID, K: r.K, Upto: upto},
		Markers: []im.Marker{{CV: c.cv, UID: d.UID, K: r.K, Upto: upto}},
	})
}

// Typing checks a typing state (§7) and returns the event to relay and
// the users to relay it to (the other members); a nil event means
// nothing goes out (at most one per user and conversation per 2 s).
// Typing is not stored.
func (s *Service) Typing(d *Device, t *codec.Typ) (*im.Event, []string, error) {
	if t.S != "c" && t.S != "p" {
		return nil, nil, im.ErrBadTypState
	}
	c, err := s.memberOf(d.UID, t.CV)
	if err != nil {
		return nil, nil, err
	}
	if !s.typing.Allow(d.UID, c.cv) {
		return nil, nil, nil // rate-limited silently: typing is best effort
	}
	to := make([]string, 0, len(c.members))
	for _, uid := range c.members {
		if uid != d.UID {
			to = append(to, uid)
		}
	}
	return &im.Event{T: im.TTyp, CV: c.cv, From: d.UID, S: t.S, TTL: 8}, to, nil
}

package service

import (
	"errors"
	"slices"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// RPC paging limits.
const (
	defaultSync    = 100
	maxSync        = 1000
	defaultHistory = 50
	maxHistory     = 200
	// maxPresenceGet caps the uids of one presence.get (33 bytes each at
	// most: 1,000 fit the request limit).
	maxPresenceGet = 1000
	// replySlack is room kept in a reply for everything but its items.
	replySlack = 256
)

// rpcHandler answers one RPC op.
type rpcHandler func(s *Service, d *Device, req *codec.Request) (any, error)

// Op is an RPC op of another feature (Options.Ops): it gets the calling
// device and the request, and answers like the ops of the table. A result
// with an AfterReply() method has it called by the adapter once the reply
// is sent (file.get sends its chunks then).
type Op func(d *Device, req *codec.Request) (any, error)

// withArgs makes a handler that decodes the op's arguments into an A
// (400 "bad args" when they do not decode) and calls fn.
func withArgs[A any](fn func(s *Service, d *Device, a *A) (any, error)) rpcHandler {
	return func(s *Service, d *Device, req *codec.Request) (any, error) {
		var a A
		if err := req.Args(&a); err != nil {
			return nil, im.ErrBadArgs
		}
		return fn(s, d, &a)
	}
}

// contactChange is a contacts op: set changes the roster or the blocks
// (nil for contacts.list); known requires the other user to exist.
type contactChange struct {
	set   func(st im.Contacts, uid, other string) error
	known bool
}

// contactsOp makes the handler of a contacts op.
func contactsOp(c contactChange) rpcHandler {
	return withArgs(func(s *Service, d *Device, a *codec.UIDArgs) (any, error) {
		return s.contacts(d, c, a.UID)
	})
}

// groupRPC makes the handler of a group op on an existing group.
func groupRPC(op groupOp) rpcHandler {
	return withArgs(func(s *Service, d *Device, a *codec.GroupArgs) (any, error) {
		return s.group(d, op, a)
	})
}

// rpcOps is the table of RPC ops (PROTOCOL §9).
var rpcOps = map[string]rpcHandler{
	"hello":         withArgs((*Service).hello),
	"sync":          withArgs((*Service).sync),
	"history":       withArgs((*Service).history),
	"conv.list":     func(s *Service, d *Device, _ *codec.Request) (any, error) { return s.convList(d) },
	"msg.get":       withArgs((*Service).msgGet),
	"contacts.list": contactsOp(contactChange{}),
	"contacts.add": contactsOp(contactChange{known: true, set: func(st im.Contacts, uid, other string) error {
		return st.SetContact(uid, other, true)
	}}),
	"contacts.remove": contactsOp(contactChange{set: func(st im.Contacts, uid, other string) error {
		return st.SetContact(uid, other, false)
	}}),
	"contacts.block": contactsOp(contactChange{known: true, set: func(st im.Contacts, uid, other string) error {
		return st.SetBlock(uid, other, true)
	}}),
	"contacts.unblock": contactsOp(contactChange{set: func(st im.Contacts, uid, other string) error {
		return st.SetBlock(uid, other, false)
	}}),
	"presence.get": withArgs((*Service).presenceGet),
	"group.create": withArgs((*Service).groupCreate),
	"conv.set":     withArgs((*Service).convSet),
	"search":       withArgs((*Service).search),
}

func init() {
	for name, op := range groupOps {
		rpcOps[name] = groupRPC(op)
	}
}

// Call runs an RPC request (§9) and returns its result, or the error
// the reply carries. Ops the protocol has but this server does not build
// yet answer im.ErrNotImplemented. Every op, unknown ones too, takes a
// token from the device's read or write bucket first.
func (s *Service) Call(d *Device, req *codec.Request) (any, error) {
	if err := s.rpc.allow(d, req.Op); err != nil {
		return nil, err
	}
	if handle, ok := rpcOps[req.Op]; ok {
		return handle(s, d, req)
	}
	if op, ok := s.o.Ops[req.Op]; ok {
		return op(d, req)
	}
	if notBuilt[req.Op] {
		return nil, im.ErrNotImplemented
	}
	return nil, im.ErrUnknownOp
}

func (s *Service) hello(d *Device, a *codec.HelloArgs) (any, error) {
	p := im.DefaultPrefs
	switch a.Enc {
	case "", "json":
	case "cbor":
		p.CBOR = true
	default:
		return nil, im.ErrBadEnc
	}
	if a.MaxPkt < 0 {
		return nil, im.ErrBadMaxPkt
	}
	if a.MaxPkt > 0 {
		p.MaxPkt = min(max(a.MaxPkt, 512), s.o.MaxPacket)
	}
	if f := a.Feat; f != nil {
		for _, x := range []struct {
			in  *bool
			out *bool
		}{{f.Typing, &p.Typing}, {f.Calls, &p.Calls}, {f.Files, &p.Files}} {
			if x.in != nil {
				*x.out = *x.in
			}
		}
	}
	d.setPrefs(p)
	head, err := s.o.Store.USHead(d.UID)
	if err != nil {
		return nil, err
	}
	epoch := s.o.Epoch
	if s.o.EpochNow != nil {
		epoch = s.o.EpochNow()
	}
	return codec.HelloResult{
		Now: s.o.Now().UnixMilli(), Epoch: epoch, USHead: head,
		Limits: codec.Limits{
			MaxPkt: s.o.MaxPacket, MaxBody: s.o.MaxBody, Burst: s.o.RateBurst,
			Rate: int(s.o.RatePerSec), MaxSync: maxSync, MaxPage: maxHistory,
			MaxGroup: s.o.MaxGroupMembers,
		},
	}, nil
}

// budget is the payload room of a reply to the device.
func (s *Service) budget(d *Device, maxBytes int) int {
	limit := s.limitFor(d.Prefs, topics.Device(d.UID, d.DID, topics.ChanRPC)) - replySlack
	if maxBytes > 0 && maxBytes < limit {
		limit = maxBytes
	}
	return max(limit, 64)
}

// fit encodes evs one by one (truncating any single event that is larger
// than the whole budget) and returns how many fit within budget, from the
// front (or from the back with fromBack). At least one always fits.
func (s *Service) fit(d *Device, evs []codec.Event, budget int, fromBack bool) (int, error) {
	total := 0
	for i := range evs {
		j := i
		if fromBack {
			j = len(evs) - 1 - i
		}
		b, err := codec.Encode(&evs[j], d.Prefs.CBOR)
		if err != nil {
			return 0, im.ErrInternal
		}
		if len(b) > budget && i == 0 {
			// Too big alone: send it cut, msg.get has the rest.
			ev := evs[j]
			cut := len(ev.B) - (len(b) - budget) - 32
			ev.Trunc = true
			ev.B = codec.CutUTF8(ev.B, max(cut, 0))
			if cut <= 0 {
				ev.Att, ev.E2E, ev.Mn = nil, nil, nil
			}
			evs[j] = ev
			return 1, nil
		}
		total += len(b) + 1
		if total > budget {
			return max(i, 1), nil
		}
	}
	return len(evs), nil
}

func (s *Service) sync(d *Device, a *codec.SyncArgs) (any, error) {
	n := a.Max
	if n <= 0 {
		n = defaultSync
	}
	n = min(n, maxSync)
	if a.MaxBytes < 0 {
		return nil, im.ErrBadMaxBytes
	}
	head, err := s.o.Store.USHead(d.UID)
	if err != nil {
		return nil, err
	}
	reset := func() (any, error) {
		convs, err := s.o.Store.UserConvs(d.UID)
		if err != nil {
			return nil, err
		}
		return codec.SyncResult{Ev: []codec.Event{}, Reset: true, Convs: orEmpty(convs), USHead: head, Next: head}, nil
	}
	if a.Since == head { // up to date: the common case, and no read transaction
		return codec.SyncResult{Ev: []codec.Event{}, Next: head}, nil
	}
	if a.Since > head {
		// The device is ahead of the server's stream (e.g. the data was
		// restored from an older backup): start over.
		return reset()
	}
	evs, more, err := s.o.Store.Stream(d.UID, a.Since, n)
	if errors.Is(err, im.ErrTrimmed) {
		// Events after since were trimmed by age: start over from us_head.
		return reset()
	}
	if err != nil {
		return nil, err
	}
	k, e := s.fit(d, evs, s.budget(d, a.MaxBytes), false)
	if e != nil {
		return nil, e
	}
	if k < len(evs) {
		evs, more = evs[:k], true
	}
	next := a.Since
	if len(evs) > 0 {
		next = evs[len(evs)-1].US
	} else if !more {
		next = head // everything after since expired
	}
	if evs == nil {
		evs = []codec.Event{}
	}
	return codec.SyncResult{Ev: evs, Next: next, More: more}, nil
}

func (s *Service) history(d *Device, a *codec.HistoryArgs) (any, error) {
	if a.Before > 0 && a.After > 0 {
		return nil, im.ErrBeforeAfter
	}
	c, e := s.readable(d.UID, a.CV)
	if e != nil {
		return nil, e
	}
	n := a.Max
	if n <= 0 {
		n = defaultHistory
	}
	n = min(n, maxHistory)
	items, complete, err := s.o.Store.History(im.HistoryQuery{CV: c.cv, Window: c.window, Before: a.Before, After: a.After, Max: n})
	if err != nil {
		return nil, err
	}
	forward := a.After > 0
	k, e := s.fit(d, items, s.budget(d, 0), !forward)
	if e != nil {
		return nil, e
	}
	if k < len(items) {
		complete = false
		if forward {
			items = items[:k]
		} else {
			items = items[len(items)-k:]
		}
	}
	r := codec.HistoryResult{Items: items, Complete: complete}
	if len(items) > 0 {
		r.First, r.Last = items[0].Seq, items[len(items)-1].Seq
	} else {
		r.Items = []codec.Event{}
	}
	return r, nil
}

func (s *Service) convList(d *Device) (any, error) {
	cvs, err := s.o.Store.UserConvs(d.UID)
	if err != nil {
		return nil, err
	}
	out := codec.ConvListResult{Convs: []codec.Conv{}}
	for _, cv := range cvs {
		c, e := s.readable(d.UID, cv)
		if e != nil {
			continue
		}
		seq, err := s.o.Store.ConvSeq(cv)
		if err != nil {
			return nil, err
		}
		read, err := s.o.Store.Marker(cv, d.UID, "read")
		if err != nil {
			return nil, err
		}
		item := codec.Conv{CV: cv, Seq: seq, Read: read}
		last, _, err := s.o.Store.History(im.HistoryQuery{CV: cv, Window: c.window, Max: 1})
		if err != nil {
			return nil, err
		}
		if len(last) > 0 {
			item.Last = &last[0]
		}
		// Unread: messages from others after the read marker; counted
		// exactly over the last 1000, estimated beyond.
		if seq > read {
			page, complete, err := s.o.Store.History(im.HistoryQuery{CV: cv, Window: im.Window{From: max(c.window.From, read+1), To: c.window.To}, After: read, Max: 1000})
			if err != nil {
				return nil, err
			}
			for _, ev := range page {
				if ev.T == codec.TMsg && ev.From != d.UID {
					item.Unread++
				}
			}
			if !complete && len(page) > 0 {
				item.Unread += seq - page[len(page)-1].Seq
			}
		}
		out.Convs = append(out.Convs, item)
	}
	return out, nil
}

func (s *Service) msgGet(d *Device, a *codec.IDArgs) (any, error) {
	id, err := ulid.ParseStrict(a.ID)
	if err != nil {
		return nil, im.ErrBadID
	}
	ev, err := s.o.Store.EventByID(id)
	if errors.Is(err, im.ErrNotFound) {
		return nil, im.ErrUnknownMessage
	}
	if err != nil {
		return nil, err
	}
	c, e := s.readable(d.UID, ev.CV)
	if e != nil || !c.window.Contains(ev.Seq) {
		return nil, im.ErrUnknownMessage
	}
	return ev, nil
}

// contacts changes the caller's roster or blocks with set (nil: just
// list) and answers both lists. Adding or blocking needs an existing user.
func (s *Service) contacts(d *Device, c contactChange, uid string) (any, error) {
	if c.set != nil {
		if topics.CheckUID(uid) != nil {
			return nil, im.ErrBadUID
		}
		if uid == d.UID {
			return nil, im.ErrSelf
		}
		if c.known {
			if ok, err := s.o.Store.UserExists(uid); err != nil {
				return nil, err
			} else if !ok {
				return nil, im.ErrUnknownUser
			}
		}
		if err := c.set(s.o.Store, d.UID, uid); err != nil {
			return nil, err
		}
		s.o.Relations.Invalidate([]string{d.UID, uid})
		s.peers.Forget(d.UID, uid)
	}
	cs, err := s.o.Store.Contacts(d.UID)
	if err != nil {
		return nil, err
	}
	bs, err := s.o.Store.Blocked(d.UID)
	if err != nil {
		return nil, err
	}
	return codec.ContactsResult{Contacts: orEmpty(cs), Blocked: orEmpty(bs)}, nil
}

// presenceGet answers the stored presence of the users the caller may
// see: itself and C(caller) minus blocks (the same rule as subscribing to
// im/p/{uid}). Unknown and invisible users are absent from the result.
func (s *Service) presenceGet(d *Device, a *codec.PresenceGetArgs) (any, error) {
	if len(a.UIDs) > maxPresenceGet {
		return nil, im.ErrTooManyUIDs
	}
	want := make([]string, 0, len(a.UIDs))
	seen := make(map[string]bool, len(a.UIDs))
	for _, uid := range a.UIDs {
		if topics.CheckUID(uid) != nil {
			return nil, im.ErrBadUID
		}
		if seen[uid] {
			continue
		}
		seen[uid] = true
		if s.o.Relations.Visible(d.UID, uid) {
			want = append(want, uid)
		}
	}
	ps, err := s.o.Store.Presences(want)
	if err != nil {
		return nil, err
	}
	if ps == nil {
		ps = map[string]im.Presence{}
	}
	return codec.PresenceGetResult{P: ps}, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clip(s)
}

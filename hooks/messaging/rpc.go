package messaging

import (
	"errors"
	"slices"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/internal/store"
	"github.com/tern-im/tern/topics"
)

// RPC paging limits.
const (
	defaultSync    = 100
	maxSync        = 1000
	defaultHistory = 50
	maxHistory     = 200
	maxRPCPayload  = 64 << 10
	// maxPresenceGet caps the uids of one presence.get (33 bytes each at
	// most: 1,000 fit the request limit).
	maxPresenceGet = 1000
	// replySlack is room kept in a reply for everything but its items.
	replySlack = 256
)

// onRPC answers an RPC request on the device's rpc topic. The returned
// error (also sent in the reply) sets the MQTT 5 PUBACK reason.
func (h *Hook) onRPC(d *device, payload []byte) *apiError {
	if len(payload) > maxRPCPayload {
		e := errf(413, "payload too large")
		h.sendErr(d, "", e)
		return e
	}
	req, err := codec.DecodeRequest(payload)
	if err != nil {
		e := errf(400, "malformed request")
		h.sendErr(d, "", e)
		return e
	}
	start := time.Now()
	if op, ok := h.opts.Ops[req.Op]; ok { // file.* (issue 12) until the op table lands
		e := h.extraRPC(d, &req, op)
		code := 200
		if e != nil {
			code = e.Code
		}
		h.opts.Metrics.RPC(req.Op, code, time.Since(start))
		return e
	}
	r, e := h.call(d, &req)
	code := 200
	if e != nil {
		code = e.Code
	}
	h.opts.Metrics.RPC(req.Op, code, time.Since(start))
	rep := codec.Reply{RID: req.RID, OK: e == nil, R: r}
	if e != nil {
		rep.R = nil
		rep.Err = &codec.ReplyErr{Code: e.Code, Msg: e.Msg}
	}
	// The hello reply is JSON; everything after it uses the new encoding.
	cb := d.pref.CBOR && req.Op != "hello"
	b, err := codec.Encode(&rep, cb)
	if err != nil {
		h.Log.Error("encode reply", "op", req.Op, "error", err)
		return errInternal
	}
	own := topics.Device(d.uid, d.did, topics.ChanRPC)
	var props *packets.Properties
	if cd := d.pk.Properties.CorrelationData; len(cd) > 0 {
		// MQTT 5: Correlation Data is echoed; a Response Topic is honoured
		// only when it is the device's own reply topic, which is where the
		// reply goes anyway.
		props = &packets.Properties{CorrelationData: cd}
	}
	h.publish(own, b, 1, props)
	return e
}

func (h *Hook) call(d *device, req *codec.Request) (any, *apiError) {
	if e := h.rpc.allow(d, req.Op); e != nil {
		return nil, e
	}
	switch req.Op {
	case "hello":
		var a codec.HelloArgs
		if err := req.Args(&a); err != nil {
			return nil, errf(400, "bad args")
		}
		return h.hello(d, &a)
	case "sync":
		var a codec.SyncArgs
		if err := req.Args(&a); err != nil {
			return nil, errf(400, "bad args")
		}
		return h.sync(d, &a)
	case "history":
		var a codec.HistoryArgs
		if err := req.Args(&a); err != nil {
			return nil, errf(400, "bad args")
		}
		return h.history(d, &a)
	case "conv.list":
		return h.convList(d)
	case "msg.get":
		var a codec.IDArgs
		if err := req.Args(&a); err != nil {
			return nil, errf(400, "bad args")
		}
		return h.msgGet(d, &a)
	case "contacts.list", "contacts.add", "contacts.remove", "contacts.block", "contacts.unblock":
		var a codec.UIDArgs
		if err := req.Args(&a); err != nil {
			return nil, errf(400, "bad args")
		}
		return h.contacts(d, req.Op, a.UID)
	case "presence.get":
		var a codec.PresenceGetArgs
		if err := req.Args(&a); err != nil {
			return nil, errf(400, "bad args")
		}
		return h.presenceGet(d, &a)
	case "group.create", "group.add", "group.remove", "group.leave", "group.members", "group.role", "group.update":
		var a codec.GroupArgs
		if err := req.Args(&a); err != nil {
			return nil, errf(400, "bad args")
		}
		return h.group(d, req.Op, &a)
	}
	if notBuilt[req.Op] {
		return nil, errNotImplemented
	}
	return nil, errf(400, "unknown op")
}

func (h *Hook) hello(d *device, a *codec.HelloArgs) (any, *apiError) {
	p := session.DefaultPrefs
	switch a.Enc {
	case "", "json":
	case "cbor":
		p.CBOR = true
	default:
		return nil, errf(400, "enc must be json or cbor")
	}
	if a.MaxPkt < 0 {
		return nil, errf(400, "bad maxPkt")
	}
	if a.MaxPkt > 0 {
		p.MaxPkt = min(max(a.MaxPkt, 512), h.opts.MaxPacket)
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
	d.s.SetPrefs(p)
	head, err := h.opts.Store.USHead(d.uid)
	if err != nil {
		return nil, fault(err)
	}
	return codec.HelloResult{
		Now: h.opts.Now().UnixMilli(), Epoch: h.opts.Epoch, USHead: head,
		Limits: codec.Limits{
			MaxPkt: h.opts.MaxPacket, MaxBody: h.opts.MaxBody, Burst: h.opts.RateBurst,
			Rate: int(h.opts.RatePerSec), MaxSync: maxSync, MaxPage: maxHistory,
			MaxGroup: h.opts.MaxGroupMembers,
		},
	}, nil
}

// budget is the payload room of a reply to the device.
func (h *Hook) budget(d *device, maxBytes int) int {
	limit := h.limitFor(d.pref, topics.Device(d.uid, d.did, topics.ChanRPC)) - replySlack
	if maxBytes > 0 && maxBytes < limit {
		limit = maxBytes
	}
	return max(limit, 64)
}

// fit encodes evs one by one (truncating any single event that is larger
// than the whole budget) and returns how many fit within budget, from the
// front (or from the back with fromBack). At least one always fits.
func (h *Hook) fit(d *device, evs []codec.Event, budget int, fromBack bool) (int, *apiError) {
	total := 0
	for i := range evs {
		j := i
		if fromBack {
			j = len(evs) - 1 - i
		}
		b, err := codec.Encode(&evs[j], d.pref.CBOR)
		if err != nil {
			return 0, errInternal
		}
		if len(b) > budget && i == 0 {
			// Too big alone: send it cut, msg.get has the rest.
			ev := evs[j]
			cut := len(ev.B) - (len(b) - budget) - 32
			ev.Trunc = true
			ev.B = cutUTF8(ev.B, max(cut, 0))
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

func (h *Hook) sync(d *device, a *codec.SyncArgs) (any, *apiError) {
	n := a.Max
	if n <= 0 {
		n = defaultSync
	}
	n = min(n, maxSync)
	if a.MaxBytes < 0 {
		return nil, errf(400, "bad maxBytes")
	}
	head, err := h.opts.Store.USHead(d.uid)
	if err != nil {
		return nil, fault(err)
	}
	reset := func() (any, *apiError) {
		convs, err := h.opts.Store.UserConvs(d.uid)
		if err != nil {
			return nil, fault(err)
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
	evs, more, err := h.opts.Store.Stream(d.uid, a.Since, n)
	if errors.Is(err, store.ErrTrimmed) {
		// Events after since were trimmed by age: start over from us_head.
		return reset()
	}
	if err != nil {
		return nil, fault(err)
	}
	k, e := h.fit(d, evs, h.budget(d, a.MaxBytes), false)
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

func (h *Hook) history(d *device, a *codec.HistoryArgs) (any, *apiError) {
	if a.Before > 0 && a.After > 0 {
		return nil, errf(400, "before and after are exclusive")
	}
	c, e := h.readable(d.uid, a.CV)
	if e != nil {
		return nil, e
	}
	n := a.Max
	if n <= 0 {
		n = defaultHistory
	}
	n = min(n, maxHistory)
	items, complete, err := h.opts.Store.History(c.cv, c.lo, c.hi, a.Before, a.After, n)
	if err != nil {
		return nil, fault(err)
	}
	forward := a.After > 0
	k, e := h.fit(d, items, h.budget(d, 0), !forward)
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

func (h *Hook) convList(d *device) (any, *apiError) {
	cvs, err := h.opts.Store.UserConvs(d.uid)
	if err != nil {
		return nil, fault(err)
	}
	out := codec.ConvListResult{Convs: []codec.Conv{}}
	for _, cv := range cvs {
		c, e := h.readable(d.uid, cv)
		if e != nil {
			continue
		}
		seq, err := h.opts.Store.ConvSeq(cv)
		if err != nil {
			return nil, fault(err)
		}
		read, err := h.opts.Store.Marker(cv, d.uid, "read")
		if err != nil {
			return nil, fault(err)
		}
		item := codec.Conv{CV: cv, Seq: seq, Read: read}
		last, _, err := h.opts.Store.History(cv, c.lo, c.hi, 0, 0, 1)
		if err != nil {
			return nil, fault(err)
		}
		if len(last) > 0 {
			item.Last = &last[0]
		}
		// Unread: messages from others after the read marker; counted
		// exactly over the last 1000, estimated beyond.
		if seq > read {
			page, complete, err := h.opts.Store.History(cv, max(c.lo, read+1), c.hi, 0, read, 1000)
			if err != nil {
				return nil, fault(err)
			}
			for _, ev := range page {
				if ev.T == codec.TMsg && ev.From != d.uid {
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

func (h *Hook) msgGet(d *device, a *codec.IDArgs) (any, *apiError) {
	id, err := ulid.ParseStrict(a.ID)
	if err != nil {
		return nil, errf(400, "bad id")
	}
	ev, err := h.opts.Store.EventByID(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errf(404, "unknown message")
	}
	if err != nil {
		return nil, fault(err)
	}
	c, e := h.readable(d.uid, ev.CV)
	if e != nil || ev.Seq < c.lo || (c.hi > 0 && ev.Seq > c.hi) {
		return nil, errf(404, "unknown message")
	}
	return ev, nil
}

func (h *Hook) contacts(d *device, op, uid string) (any, *apiError) {
	if op != "contacts.list" {
		if topics.CheckUID(uid) != nil {
			return nil, errf(400, "bad uid")
		}
		if uid == d.uid {
			return nil, errf(400, "that is you")
		}
		if op == "contacts.add" || op == "contacts.block" {
			if _, err := h.opts.Store.User(uid); errors.Is(err, store.ErrNotFound) {
				return nil, errf(404, "unknown user")
			} else if err != nil {
				return nil, fault(err)
			}
		}
		var err error
		switch op {
		case "contacts.add":
			err = h.opts.Store.SetContact(d.uid, uid, true)
		case "contacts.remove":
			err = h.opts.Store.SetContact(d.uid, uid, false)
		case "contacts.block":
			err = h.opts.Store.SetBlock(d.uid, uid, true)
		case "contacts.unblock":
			err = h.opts.Store.SetBlock(d.uid, uid, false)
		}
		if err != nil {
			return nil, fault(err)
		}
		h.opts.Relations.Invalidate([]string{d.uid, uid})
		h.peers.forget(d.uid, uid)
	}
	cs, err := h.opts.Store.Contacts(d.uid)
	if err != nil {
		return nil, fault(err)
	}
	bs, err := h.opts.Store.Blocked(d.uid)
	if err != nil {
		return nil, fault(err)
	}
	return codec.ContactsResult{Contacts: orEmpty(cs), Blocked: orEmpty(bs)}, nil
}

// presenceGet answers the stored presence of the users the caller may
// see: itself and C(caller) minus blocks (the same rule as subscribing to
// im/p/{uid}). Unknown and invisible users are absent from the result.
func (h *Hook) presenceGet(d *device, a *codec.PresenceGetArgs) (any, *apiError) {
	if len(a.UIDs) > maxPresenceGet {
		return nil, errf(400, "too many uids")
	}
	want := make([]string, 0, len(a.UIDs))
	seen := make(map[string]bool, len(a.UIDs))
	for _, uid := range a.UIDs {
		if topics.CheckUID(uid) != nil {
			return nil, errf(400, "bad uid")
		}
		if seen[uid] {
			continue
		}
		seen[uid] = true
		if h.opts.Relations.Visible(d.uid, uid) {
			want = append(want, uid)
		}
	}
	ps, err := h.opts.Store.Presences(want)
	if err != nil {
		return nil, fault(err)
	}
	out := codec.PresenceGetResult{P: make(map[string]codec.Presence, len(ps))}
	for uid, p := range ps {
		out.P[uid] = codec.Presence{S: p.S, PV: p.PV, LS: p.LS, D: p.D, TX: p.TX}
	}
	return out, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clip(s)
}

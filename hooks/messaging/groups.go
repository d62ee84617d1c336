package messaging

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/store"
	"github.com/tern-im/tern/topics"
)

// Group roles.
const (
	roleOwner  = "owner"
	roleAdmin  = "admin"
	roleMember = "member"
)

const maxGroupName = 128

func (h *Hook) group(d *device, op string, a *codec.GroupArgs) (any, *apiError) {
	if op == "group.create" {
		return h.groupCreate(d, a)
	}
	if topics.CheckGID(a.GID) != nil {
		return nil, errf(400, "bad gid")
	}
	defer h.groups.lock(a.GID)()
	g, err := h.opts.Store.Group(a.GID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errf(404, "unknown group")
	}
	if err != nil {
		return nil, fault(err)
	}
	order, recs, err := h.opts.Relations.members(a.GID)
	if err != nil {
		return nil, fault(err)
	}
	me := recs[d.uid]
	if !me.Current() {
		return nil, errf(403, "not a member")
	}
	admin := me.Role == roleOwner || me.Role == roleAdmin
	cv := "g:" + g.GID
	ap := &store.Append{CV: cv, To: order}
	touched := slices.Clone(order)
	switch op {
	case "group.members":
		return membersOf(order, recs), nil
	case "group.add":
		if !admin {
			return nil, errf(403, "not an admin")
		}
		add, e := h.checkUIDs(d.uid, a.UIDs)
		if e != nil {
			return nil, e
		}
		var fresh []string
		for _, u := range add {
			if !recs[u].Current() {
				fresh = append(fresh, u)
			}
		}
		if len(fresh) == 0 {
			return membersOf(order, recs), nil
		}
		if len(order)+len(fresh) > h.opts.MaxGroupMembers {
			return nil, errf(409, "group full")
		}
		if e := h.rpc.allowAdds(fresh); e != nil {
			return nil, e
		}
		ap.To = append(slices.Clone(order), fresh...)
		touched = ap.To
		ap.Event = codec.Event{T: codec.TMember, Op: "add", Who: fresh, By: d.uid, Role: roleMember}
		for _, u := range fresh {
			ap.Members = append(ap.Members, store.MemberChange{GID: g.GID, UID: u, Rec: store.MemberRec{Role: roleMember}, SetFrom: true})
			ap.UserConvs = append(ap.UserConvs, store.UserConv{UID: u, CV: cv})
		}
		g.N = len(ap.To)
	case "group.remove":
		if !admin {
			return nil, errf(403, "not an admin")
		}
		if len(a.UIDs) == 0 || len(a.UIDs) > h.opts.MaxGroupMembers {
			return nil, errf(400, "bad uids")
		}
		var gone []string
		for _, u := range a.UIDs {
			if topics.CheckUID(u) != nil {
				return nil, errf(400, "bad uid")
			}
			r := recs[u]
			switch {
			case u == d.uid:
				return nil, errf(400, "use group.leave")
			case !r.Current():
				continue
			case r.Role == roleOwner, r.Role == roleAdmin && me.Role != roleOwner:
				return nil, errf(403, "cannot remove "+r.Role)
			}
			if !slices.Contains(gone, u) {
				gone = append(gone, u)
				ap.Members = append(ap.Members, store.MemberChange{GID: g.GID, UID: u, Rec: r, SetTo: true})
				ap.UserConvs = append(ap.UserConvs, store.UserConv{UID: u, CV: cv, Remove: true})
			}
		}
		if len(gone) == 0 {
			return membersOf(order, recs), nil
		}
		ap.Event = codec.Event{T: codec.TMember, Op: "remove", Who: gone, By: d.uid}
		g.N = len(order) - len(gone)
	case "group.leave":
		if me.Role == roleOwner && len(order) > 1 {
			return nil, errf(409, "the owner must hand over ownership (group.role) first")
		}
		ap.Event = codec.Event{T: codec.TMember, Op: "leave", Who: []string{d.uid}, By: d.uid}
		ap.Members = []store.MemberChange{{GID: g.GID, UID: d.uid, Rec: me, SetTo: true}}
		ap.UserConvs = []store.UserConv{{UID: d.uid, CV: cv, Remove: true}}
		g.N = len(order) - 1
	case "group.role":
		if !admin {
			return nil, errf(403, "not an admin")
		}
		if topics.CheckUID(a.UID) != nil {
			return nil, errf(400, "bad uid")
		}
		r := recs[a.UID]
		if !r.Current() {
			return nil, errf(404, "not a member")
		}
		switch {
		case a.Role != roleOwner && a.Role != roleAdmin && a.Role != roleMember:
			return nil, errf(400, "role must be owner, admin or member")
		case a.UID == d.uid:
			return nil, errf(400, "cannot change your own role")
		case r.Role == roleOwner:
			return nil, errf(403, "cannot change the owner's role")
		case r.Role == roleAdmin && me.Role != roleOwner:
			// An admin manages plain members; only the owner changes an
			// admin's role (else an admin could demote, then remove, another).
			return nil, errf(403, "only the owner changes an admin's role")
		case a.Role == roleOwner && me.Role != roleOwner:
			return nil, errf(403, "only the owner hands over ownership")
		}
		if a.Role == roleOwner {
			// Not under the owner's lock (groups → owners would invert
			// group.create's order): concurrent hand-overs may pass the
			// cap by one each.
			if e := h.ownsTooMany(a.UID); e != nil {
				return nil, e
			}
		}
		r.Role = a.Role
		ap.Members = []store.MemberChange{{GID: g.GID, UID: a.UID, Rec: r}}
		if a.Role == roleOwner { // hand-over: the old owner becomes admin
			me.Role = roleAdmin
			ap.Members = append(ap.Members, store.MemberChange{GID: g.GID, UID: d.uid, Rec: me})
			g.Owner = a.UID
		}
		ap.Event = codec.Event{T: codec.TMember, Op: "role", Who: []string{a.UID}, By: d.uid, Role: a.Role}
	case "group.update":
		if !admin {
			return nil, errf(403, "not an admin")
		}
		if a.Name == nil && a.Avatar == nil {
			return nil, errf(400, "nothing to update")
		}
		ev := codec.Event{T: codec.TConv, By: d.uid}
		if a.Name != nil {
			if len(*a.Name) > maxGroupName {
				return nil, errf(400, "name too long")
			}
			g.Name, ev.Name = *a.Name, *a.Name
		}
		if a.Avatar != nil {
			if *a.Avatar != "" {
				if _, err := ulid.ParseStrict(*a.Avatar); err != nil {
					return nil, errf(400, "avatar must be a file id")
				}
			}
			g.Avatar, ev.Av = *a.Avatar, *a.Avatar
		}
		ap.Event = ev
	default:
		return nil, errf(400, "unknown op")
	}
	g.V++
	ap.Group = &g
	if e := h.append(nil, ap, "", ""); e != nil {
		return nil, e
	}
	h.opts.Relations.Invalidate(touched, g.GID)
	h.publishMeta(g)
	if op == "group.leave" {
		return struct{}{}, nil
	}
	if op == "group.role" || op == "group.update" {
		return struct{}{}, nil
	}
	order, recs, err = h.opts.Relations.members(g.GID)
	if err != nil {
		return nil, fault(err)
	}
	return membersOf(order, recs), nil
}

func membersOf(order []string, recs map[string]store.MemberRec) codec.MembersResult {
	out := codec.MembersResult{Members: make([]codec.Member, 0, len(order))}
	for _, u := range order {
		out.Members = append(out.Members, codec.Member{UID: u, Role: recs[u].Role})
	}
	return out
}

// checkUIDs validates users to add to a group: well-formed (400), known
// (404), not blocking the adder (403). Duplicates and the caller are
// dropped.
func (h *Hook) checkUIDs(caller string, uids []string) ([]string, *apiError) {
	if len(uids) > h.opts.MaxGroupMembers {
		return nil, errf(409, "group full")
	}
	var out []string
	for _, u := range uids {
		if topics.CheckUID(u) != nil {
			return nil, errf(400, "bad uid")
		}
		if u == caller || slices.Contains(out, u) {
			continue
		}
		if _, err := h.opts.Store.User(u); errors.Is(err, store.ErrNotFound) {
			return nil, errf(404, "unknown user "+u)
		} else if err != nil {
			return nil, fault(err)
		}
		for _, p := range [2][2]string{{u, caller}, {caller, u}} {
			blocked, err := h.opts.Store.Blocks(p[0], p[1])
			if err != nil {
				return nil, fault(err)
			}
			if blocked {
				return nil, errf(403, "blocked")
			}
		}
		out = append(out, u)
	}
	return out, nil
}

func (h *Hook) groupCreate(d *device, a *codec.GroupArgs) (any, *apiError) {
	gid := a.GID
	if gid == "" {
		gid = strings.ToLower(ulid.Make().String())
	} else if topics.CheckGID(gid) != nil {
		return nil, errf(400, "bad gid")
	}
	name := ""
	if a.Name != nil {
		name = *a.Name
	}
	if len(name) > maxGroupName {
		return nil, errf(400, "name too long")
	}
	members, e := h.checkUIDs(d.uid, a.Members)
	if e != nil {
		return nil, e
	}
	if len(members)+1 > h.opts.MaxGroupMembers {
		return nil, errf(409, "group full")
	}
	// Lock order: the creator's owner stripe, then the group's.
	defer h.rpc.owners.lock(d.uid)()
	if e := h.ownsTooMany(d.uid); e != nil {
		return nil, e
	}
	defer h.groups.lock(gid)()
	if _, err := h.opts.Store.Group(gid); err == nil {
		return nil, errf(409, "group exists")
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fault(err)
	}
	if e := h.rpc.allowAdds(members); e != nil {
		return nil, e
	}
	all := append([]string{d.uid}, members...)
	cv := "g:" + gid
	g := store.Group{GID: gid, Name: name, Owner: d.uid, V: 1, N: len(all), Created: h.opts.Now().UnixMilli()}
	ap := &store.Append{
		CV: cv, To: all, Group: &g,
		Event: codec.Event{T: codec.TMember, Op: "add", Who: all, By: d.uid, Role: roleMember},
	}
	for _, u := range all {
		role := roleMember
		if u == d.uid {
			role = roleOwner
		}
		ap.Members = append(ap.Members, store.MemberChange{GID: gid, UID: u, Rec: store.MemberRec{Role: role}, SetFrom: true})
		ap.UserConvs = append(ap.UserConvs, store.UserConv{UID: u, CV: cv})
	}
	if e := h.append(nil, ap, "", ""); e != nil {
		return nil, e
	}
	h.opts.Relations.Invalidate(all, gid)
	h.publishMeta(g)
	return codec.GroupCreated{GID: gid, CV: cv}, nil
}

// publishMeta retains im/g/{gid}/meta (JSON: shared retained topics are
// always JSON).
func (h *Hook) publishMeta(g store.Group) {
	b, err := json.Marshal(codec.GroupMeta{Name: g.Name, Avatar: g.Avatar, N: g.N, V: g.V})
	if err != nil {
		h.Log.Error("encode group meta", "error", err)
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   topics.GroupMeta(g.GID),
		Payload:     b,
		PacketID:    1, // mochi requires one for QoS 1; inline ids are not tracked
	}
	if err := h.opts.Server.InjectPacket(h.inline, pk); err != nil {
		h.Log.Error("publish group meta", "group", g.GID, "error", err)
	}
}

package service

import (
	"errors"
	"slices"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

const maxGroupName = 128

// groupTx is one change of an existing group, prepared by a groupOp
// under the group's exclusive stripe: the group as read, its current
// members, the caller's record, and the append the op fills in.
type groupTx struct {
	g     im.Group
	order []string
	recs  map[string]im.Member
	me    im.Member
	ap    *im.Append
	// touched are the users whose cached relations the change affects.
	touched []string
	// committed, if set, runs after the append with its error (the
	// avatar's file references).
	committed func(error) error
}

// groupOp is one group RPC on an existing group. It either fills t.ap
// (Event, Members, UserConvs) and t.g for a change, or returns a reply
// without any change (nothing to do). list makes the reply after a
// change the new member list.
type groupOp struct {
	change func(s *Service, d *Device, t *groupTx, a *codec.GroupArgs) (unchanged any, err error)
	list   bool
	admin  bool // the caller must be owner or admin
}

// groupOps is the table of group RPCs on existing groups (group.create
// is its own handler).
var groupOps = map[string]groupOp{
	"group.members": {change: func(_ *Service, _ *Device, t *groupTx, _ *codec.GroupArgs) (any, error) {
		return membersOf(t.order, t.recs), nil
	}},
	"group.add":    {change: (*Service).groupAdd, list: true, admin: true},
	"group.remove": {change: (*Service).groupRemove, list: true, admin: true},
	"group.leave":  {change: (*Service).groupLeave},
	"group.role":   {change: (*Service).groupRole, admin: true},
	"group.update": {change: (*Service).groupUpdate, admin: true},
}

// group runs op on an existing group: resolve it and the caller under the
// group's stripe, let the op prepare its change, commit, invalidate the
// relations cache and republish the group meta.
func (s *Service) group(d *Device, op groupOp, a *codec.GroupArgs) (any, error) {
	if topics.CheckGID(a.GID) != nil {
		return nil, im.ErrBadGID
	}
	defer s.groups.lock(a.GID)()
	g, err := s.o.Store.Group(a.GID)
	if errors.Is(err, im.ErrNotFound) {
		return nil, im.ErrUnknownGroup
	}
	if err != nil {
		return nil, err
	}
	order, recs, err := s.o.Relations.Members(a.GID)
	if err != nil {
		return nil, err
	}
	t := &groupTx{g: g, order: order, recs: recs, me: recs[d.UID], touched: slices.Clone(order)}
	if !t.me.Current() {
		return nil, im.ErrNotMember
	}
	if op.admin && !t.me.Admin() {
		return nil, im.ErrNotAdmin
	}
	t.ap = &im.Append{CV: g.CV(), To: order}
	if r, err := op.change(s, d, t, a); r != nil || err != nil {
		return r, err
	}
	t.g.V++
	t.ap.Group = &t.g
	err = s.append(nil, t.ap)
	if t.committed != nil {
		if ferr := t.committed(err); err == nil {
			err = ferr
		}
	}
	if err != nil {
		return nil, err
	}
	s.o.Relations.Invalidate(t.touched, g.GID)
	s.o.Announce(t.g)
	if !op.list {
		return struct{}{}, nil
	}
	order, recs, err = s.o.Relations.Members(g.GID)
	if err != nil {
		return nil, err
	}
	return membersOf(order, recs), nil
}

func (s *Service) groupAdd(d *Device, t *groupTx, a *codec.GroupArgs) (any, error) {
	add, err := s.checkUIDs(d.UID, a.UIDs)
	if err != nil {
		return nil, err
	}
	var fresh []string
	for _, u := range add {
		if !t.recs[u].Current() {
			fresh = append(fresh, u)
		}
	}
	if len(fresh) == 0 {
		return membersOf(t.order, t.recs), nil
	}
	if len(t.order)+len(fresh) > s.o.MaxGroupMembers {
		return nil, im.ErrGroupFull
	}
	if err := s.rpc.allowAdds(fresh); err != nil {
		return nil, err
	}
	t.ap.To = append(slices.Clone(t.order), fresh...)
	t.touched = t.ap.To
	t.ap.Event = im.Event{T: im.TMember, Op: "add", Who: fresh, By: d.UID, Role: im.RoleMember}
	for _, u := range fresh {
		t.ap.Members = append(t.ap.Members, im.MemberChange{GID: t.g.GID, UID: u, Rec: im.Member{Role: im.RoleMember}, SetFrom: true})
		t.ap.UserConvs = append(t.ap.UserConvs, im.UserConv{UID: u, CV: t.ap.CV})
	}
	t.g.N = len(t.ap.To)
	return nil, nil
}

func (s *Service) groupRemove(d *Device, t *groupTx, a *codec.GroupArgs) (any, error) {
	if len(a.UIDs) == 0 || len(a.UIDs) > s.o.MaxGroupMembers {
		return nil, im.ErrBadUIDs
	}
	var gone []string
	for _, u := range a.UIDs {
		if topics.CheckUID(u) != nil {
			return nil, im.ErrBadUID
		}
		r := t.recs[u]
		switch {
		case u == d.UID:
			return nil, im.ErrUseLeave
		case !r.Current():
			continue
		}
		if err := im.MayRemove(t.me, r); err != nil {
			return nil, err
		}
		if !slices.Contains(gone, u) {
			gone = append(gone, u)
			t.ap.Members = append(t.ap.Members, im.MemberChange{GID: t.g.GID, UID: u, Rec: r, SetTo: true})
			t.ap.UserConvs = append(t.ap.UserConvs, im.UserConv{UID: u, CV: t.ap.CV, Remove: true})
		}
	}
	if len(gone) == 0 {
		return membersOf(t.order, t.recs), nil
	}
	t.ap.Event = im.Event{T: im.TMember, Op: "remove", Who: gone, By: d.UID}
	t.g.N = len(t.order) - len(gone)
	return nil, nil
}

func (s *Service) groupLeave(d *Device, t *groupTx, _ *codec.GroupArgs) (any, error) {
	if t.me.Role == im.RoleOwner && len(t.order) > 1 {
		return nil, im.ErrOwnerMustLeave
	}
	t.ap.Event = im.Event{T: im.TMember, Op: "leave", Who: []string{d.UID}, By: d.UID}
	t.ap.Members = []im.MemberChange{{GID: t.g.GID, UID: d.UID, Rec: t.me, SetTo: true}}
	t.ap.UserConvs = []im.UserConv{{UID: d.UID, CV: t.ap.CV, Remove: true}}
	t.g.N = len(t.order) - 1
	return nil, nil
}

func (s *Service) groupRole(d *Device, t *groupTx, a *codec.GroupArgs) (any, error) {
	if topics.CheckUID(a.UID) != nil {
		return nil, im.ErrBadUID
	}
	r := t.recs[a.UID]
	if !r.Current() {
		return nil, im.ErrNoSuchMember
	}
	if err := im.MaySetRole(t.me, r, a.Role, a.UID == d.UID); err != nil {
		return nil, err
	}
	if a.Role == im.RoleOwner {
		// Not under the owner's lock (groups → owners would invert
		// group.create's order): concurrent hand-overs may pass the cap
		// by one each.
		if err := s.ownsTooMany(a.UID); err != nil {
			return nil, err
		}
	}
	r.Role = a.Role
	t.ap.Members = []im.MemberChange{{GID: t.g.GID, UID: a.UID, Rec: r}}
	if a.Role == im.RoleOwner { // hand-over: the old owner becomes admin
		me := t.me
		me.Role = im.RoleAdmin
		t.ap.Members = append(t.ap.Members, im.MemberChange{GID: t.g.GID, UID: d.UID, Rec: me})
		t.g.Owner = a.UID
	}
	t.ap.Event = im.Event{T: im.TMember, Op: "role", Who: []string{a.UID}, By: d.UID, Role: a.Role}
	return nil, nil
}

func (s *Service) groupUpdate(d *Device, t *groupTx, a *codec.GroupArgs) (any, error) {
	if a.Name == nil && a.Avatar == nil {
		return nil, im.ErrNothingToDo
	}
	ev := im.Event{T: im.TConv, By: d.UID}
	if a.Name != nil {
		if len(*a.Name) > maxGroupName {
			return nil, im.ErrNameTooLong
		}
		t.g.Name, ev.Name = *a.Name, *a.Name
	}
	if a.Avatar != nil {
		if *a.Avatar != "" {
			if _, err := ulid.ParseStrict(*a.Avatar); err != nil {
				return nil, im.ErrBadAvatar
			}
		}
		if err := s.avatarRefs(d, t, *a.Avatar); err != nil {
			return nil, err
		}
		t.g.Avatar, ev.Av = *a.Avatar, *a.Avatar
	}
	t.ap.Event = ev
	return nil, nil
}

func membersOf(order []string, recs map[string]im.Member) codec.MembersResult {
	out := codec.MembersResult{Members: make([]codec.Member, 0, len(order))}
	for _, u := range order {
		out.Members = append(out.Members, codec.Member{UID: u, Role: recs[u].Role})
	}
	return out
}

// checkUIDs validates users to add to a group: well-formed (400), known
// (404), not blocking the adder (403). Duplicates and the caller are
// dropped.
func (s *Service) checkUIDs(caller string, uids []string) ([]string, error) {
	if len(uids) > s.o.MaxGroupMembers {
		return nil, im.ErrGroupFull
	}
	var out []string
	for _, u := range uids {
		if topics.CheckUID(u) != nil {
			return nil, im.ErrBadUID
		}
		if u == caller || slices.Contains(out, u) {
			continue
		}
		if ok, err := s.o.Store.UserExists(u); err != nil {
			return nil, err
		} else if !ok {
			return nil, im.ErrUnknownUser.Detail(" " + u)
		}
		for _, p := range [2][2]string{{u, caller}, {caller, u}} {
			blocked, err := s.o.Store.Blocks(p[0], p[1])
			if err != nil {
				return nil, err
			}
			if blocked {
				return nil, im.ErrBlocked
			}
		}
		out = append(out, u)
	}
	return out, nil
}

func (s *Service) groupCreate(d *Device, a *codec.GroupArgs) (any, error) {
	gid := a.GID
	if gid == "" {
		gid = strings.ToLower(ulid.Make().String())
	} else if topics.CheckGID(gid) != nil {
		return nil, im.ErrBadGID
	}
	name := ""
	if a.Name != nil {
		name = *a.Name
	}
	if len(name) > maxGroupName {
		return nil, im.ErrNameTooLong
	}
	members, err := s.checkUIDs(d.UID, a.Members)
	if err != nil {
		return nil, err
	}
	if len(members)+1 > s.o.MaxGroupMembers {
		return nil, im.ErrGroupFull
	}
	// Lock order: the creator's owner stripe, then the group's.
	defer s.rpc.owners.lock(d.UID)()
	if err := s.ownsTooMany(d.UID); err != nil {
		return nil, err
	}
	defer s.groups.lock(gid)()
	if _, err := s.o.Store.Group(gid); err == nil {
		return nil, im.ErrGroupExists
	} else if !errors.Is(err, im.ErrNotFound) {
		return nil, err
	}
	if err := s.rpc.allowAdds(members); err != nil {
		return nil, err
	}
	all := append([]string{d.UID}, members...)
	g := im.Group{GID: gid, Name: name, Owner: d.UID, V: 1, N: len(all), Created: s.o.Now().UnixMilli()}
	cv := g.CV()
	ap := &im.Append{
		CV: cv, To: all, Group: &g,
		Event: im.Event{T: im.TMember, Op: "add", Who: all, By: d.UID, Role: im.RoleMember},
	}
	for _, u := range all {
		role := im.RoleMember
		if u == d.UID {
			role = im.RoleOwner
		}
		ap.Members = append(ap.Members, im.MemberChange{GID: gid, UID: u, Rec: im.Member{Role: role}, SetFrom: true})
		ap.UserConvs = append(ap.UserConvs, im.UserConv{UID: u, CV: cv})
	}
	if err := s.append(nil, ap); err != nil {
		return nil, err
	}
	s.o.Relations.Invalidate(all, gid)
	s.o.Announce(g)
	return codec.GroupCreated{GID: gid, CV: cv}, nil
}

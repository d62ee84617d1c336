package im_test

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/tern-im/tern/internal/im"
)

func TestErrors(t *testing.T) {
	t.Parallel()
	e := im.ErrUnknownUser.Detail(" bob")
	if e.Code != 404 || e.Msg != "unknown user bob" || !errors.Is(e, im.ErrUnknownUser) || errors.Is(e, im.ErrUnknownGroup) {
		t.Fatalf("Detail: %+v", e)
	}
	wrapped := fmt.Errorf("append: %w", im.ErrClosed)
	if f := im.Fault(wrapped); f != im.ErrClosed || f.Code != 503 {
		t.Fatalf("Fault(wrapped ErrClosed) = %+v", f)
	}
	if f := im.Fault(errors.New("disk on fire")); f != im.ErrInternal {
		t.Fatalf("Fault(other) = %+v", f)
	}
	if f := im.Fault(im.ErrNotFound); f.Code != 500 {
		t.Fatalf("a port's ErrNotFound is not a client answer: %+v", f)
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		m    im.Member
		seq  uint64
		want bool
	}{
		{im.Member{Role: im.RoleMember, From: 3}, 2, false},
		{im.Member{Role: im.RoleMember, From: 3}, 3, true},
		{im.Member{Role: im.RoleMember, From: 3}, 1 << 40, true},
		{im.Member{Role: im.RoleMember, From: 3, To: 5}, 5, true},
		{im.Member{Role: im.RoleMember, From: 3, To: 5}, 6, false},
		{im.Member{From: 3}, 4, false}, // not current and no To: closed at From
	} {
		if got := c.m.Window().Contains(c.seq); got != c.want {
			t.Errorf("%+v contains %d: %v", c.m, c.seq, got)
		}
	}
}

func TestGroupRules(t *testing.T) {
	t.Parallel()
	owner, admin, member := im.Member{Role: im.RoleOwner}, im.Member{Role: im.RoleAdmin}, im.Member{Role: im.RoleMember}
	for _, c := range []struct {
		actor, target im.Member
		want          error
	}{
		{owner, admin, nil}, {owner, member, nil}, {admin, member, nil},
		{admin, admin, im.ErrCannotRemove}, {admin, owner, im.ErrCannotRemove}, {owner, owner, im.ErrCannotRemove},
	} {
		if err := im.MayRemove(c.actor, c.target); !errors.Is(err, c.want) && err != c.want {
			t.Errorf("%s removes %s: %v, want %v", c.actor.Role, c.target.Role, err, c.want)
		}
	}
	for _, c := range []struct {
		actor, target im.Member
		role          string
		self          bool
		want          error
	}{
		{owner, member, im.RoleAdmin, false, nil},
		{owner, member, im.RoleOwner, false, nil},
		{admin, member, im.RoleOwner, false, im.ErrOwnerHandsOver},
		{admin, owner, im.RoleMember, false, im.ErrOwnerRole},
		{admin, admin, im.RoleMember, true, im.ErrOwnRole},
		{admin, admin, im.RoleMember, false, im.ErrAdminRole},
		{owner, admin, im.RoleMember, false, nil},
		{owner, member, "king", false, im.ErrBadRole},
	} {
		if err := im.MaySetRole(c.actor, c.target, c.role, c.self); err != c.want {
			t.Errorf("%s sets %s to %s: %v, want %v", c.actor.Role, c.target.Role, c.role, err, c.want)
		}
	}
}

func TestParseConv(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cv, a, b, gid string
		ok            bool
	}{
		{"d:alice:bob", "alice", "bob", "", true},
		{"d:bob:alice", "", "", "", false},
		{"d:alice", "", "", "", false},
		{"g:ops", "", "", "ops", true},
		{"g:", "", "", "", false},
		{"x:ops", "", "", "", false},
	} {
		a, b, gid, ok := im.ParseConv(c.cv)
		if ok != c.ok || (ok && (a != c.a || b != c.b || gid != c.gid)) {
			t.Errorf("ParseConv(%q) = %q %q %q %v", c.cv, a, b, gid, ok)
		}
	}
	if cv := im.DMConv("bob", "alice"); cv != "d:alice:bob" {
		t.Errorf("DMConv = %q", cv)
	}
}

func FuzzParseConv(f *testing.F) {
	for _, s := range []string{"d:alice:bob", "g:ops", "d::", "g:", "d:a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cv string) {
		a, b, gid, ok := im.ParseConv(cv)
		if !ok {
			return
		}
		switch {
		case gid != "":
			if im.GroupConv(gid) != cv {
				t.Fatalf("%q: group %q does not round-trip", cv, gid)
			}
		case a >= b:
			t.Fatalf("%q: DM users %q, %q out of order", cv, a, b)
		case im.DMConv(b, a) != cv:
			t.Fatalf("%q: DM %q, %q does not round-trip", cv, a, b)
		}
	})
}

// TestCommitStreamBackpressure: a full stream makes Reserve wait (the
// appender, before its PUBACK) until delivery takes one; Publish of a
// reserved append never blocks; Reserve gives up when stopped.
func TestCommitStreamBackpressure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := im.NewCommitStream(2, 1)
		a, b := &im.Append{CV: "a", To: []string{"x"}}, &im.Append{CV: "b", To: []string{"x"}}
		for _, x := range []*im.Append{a, b} {
			if err := s.Reserve(nil, x); err != nil {
				t.Fatal(err)
			}
		}
		s.Publish(a)
		s.Publish(b)                                      // the Log's side: returns at once
		s.Publish(&im.Append{CV: "c", To: []string{"x"}}) // reserved nothing: not published
		s.Release(a)                                      // already published: a no-op
		reserved := make(chan error, 1)
		go func() { reserved <- s.Reserve(nil, &im.Append{}) }()
		synctest.Wait()
		select {
		case err := <-reserved:
			t.Fatalf("Reserve on a full stream returned %v", err)
		default:
		}
		d := <-s.Lane(0)
		if d.A.CV != "a" {
			t.Fatalf("first commit %q", d.A.CV)
		}
		s.Done(d)
		synctest.Wait()
		select {
		case err := <-reserved:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("Reserve still waits after delivery took a commit")
		}
		if s.Len() != 2 || s.Cap() != 2 {
			t.Fatalf("len %d cap %d", s.Len(), s.Cap())
		}
		stop := make(chan struct{})
		go func() { reserved <- s.Reserve(stop, &im.Append{}) }()
		synctest.Wait()
		close(stop)
		if err := <-reserved; !errors.Is(err, im.ErrClosed) {
			t.Fatalf("stopped Reserve: %v", err)
		}
		d = <-s.Lane(0)
		if d.A.CV != "b" || len(s.Lane(0)) != 0 {
			t.Fatalf("second commit %q, then %d more", d.A.CV, len(s.Lane(0)))
		}
		s.Done(d)
		if s.Len() != 1 {
			t.Fatalf("len %d after the second delivery", s.Len())
		}
	})
}

// TestCommitStreamLanes: a user's events always take the same lane, in
// commit order; an append's slot is freed when its last lane is done.
func TestCommitStreamLanes(t *testing.T) {
	t.Parallel()
	s := im.NewCommitStream(8, 4)
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"}
	var as []*im.Append
	for i := range 3 {
		a := &im.Append{CV: fmt.Sprint("c", i), To: users, US: []uint64{1, 2, 3, 4, 5, 6, 7, 8}}
		if err := s.Reserve(nil, a); err != nil {
			t.Fatal(err)
		}
		s.Publish(a)
		as = append(as, a)
	}
	laneOf := map[string]int{}
	for i := range s.Lanes() {
		for k := 0; len(s.Lane(i)) > 0; k++ {
			d := <-s.Lane(i)
			if d.A != as[k] {
				t.Fatalf("lane %d: delivery %d is %s, want %s (commit order)", i, k, d.A.CV, as[k].CV)
			}
			for _, j := range d.Idx {
				u := d.A.To[j]
				if l, ok := laneOf[u]; ok && l != i {
					t.Fatalf("%s in lanes %d and %d", u, l, i)
				}
				laneOf[u] = i
			}
			s.Done(d)
		}
	}
	if len(laneOf) != len(users) || s.Len() != 0 {
		t.Fatalf("%d users delivered, %d slots still taken", len(laneOf), s.Len())
	}
}

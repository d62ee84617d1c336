package im

import (
	"strings"
	"sync"
	"time"
)

// DMConv is the conversation id of the DM between a and b.
func DMConv(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

// GroupConv is the conversation id of group gid.
func GroupConv(gid string) string { return "g:" + gid }

// ParseConv splits a conversation id: a DM ("d:a:b", a < b) gives its two
// users, a group ("g:gid") its gid. Ids are not validated here.
func ParseConv(cv string) (a, b, gid string, ok bool) {
	if rest, isDM := strings.CutPrefix(cv, "d:"); isDM {
		a, b, ok = strings.Cut(rest, ":")
		return a, b, "", ok && a < b
	}
	if gid, isGroup := strings.CutPrefix(cv, "g:"); isGroup {
		return "", "", gid, gid != ""
	}
	return "", "", "", false
}

// MayRemove is the rule for group.remove of target by actor: nobody
// removes the owner, and only the owner removes an admin.
func MayRemove(actor, target Member) error {
	if target.Role == RoleOwner || (target.Role == RoleAdmin && actor.Role != RoleOwner) {
		return ErrCannotRemove.Detail(" " + target.Role)
	}
	return nil
}

// MaySetRole is the rule for group.role: actor (an admin) gives target
// (another current member) role. Only the owner hands over ownership; the
// owner's own role is changed only by a hand-over; an admin manages plain
// members, and only the owner changes an admin's role (else an admin
// could demote, then remove, another).
func MaySetRole(actor, target Member, role string, self bool) error {
	switch {
	case role != RoleOwner && role != RoleAdmin && role != RoleMember:
		return ErrBadRole
	case self:
		return ErrOwnRole
	case target.Role == RoleOwner:
		return ErrOwnerRole
	case target.Role == RoleAdmin && actor.Role != RoleOwner:
		return ErrAdminRole
	case role == RoleOwner && actor.Role != RoleOwner:
		return ErrOwnerHandsOver
	}
	return nil
}

// maxCached bounds the in-memory maps of the gates below; past it they
// are swept (or start over).
const maxCached = 100_000

// Limiter is a token bucket per key (a device): Burst commands at once,
// refilled at Rate per second.
type Limiter struct {
	mu    sync.Mutex
	burst float64
	rate  float64
	now   func() time.Time
	m     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter returns a limiter; now is its clock.
func NewLimiter(burst int, rate float64, now func() time.Time) *Limiter {
	return &Limiter{burst: float64(burst), rate: rate, now: now, m: map[string]*bucket{}}
}

// Allow takes a token for k, reporting whether one was left.
func (l *Limiter) Allow(k string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.m[k]
	if b == nil {
		if len(l.m) >= maxCached {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.m[k] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops buckets that have refilled: they hold no state.
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.m {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.m, k)
		}
	}
}

// TypingGate lets one typing notification per (user, cv) through per
// period (PROTOCOL §7); the others are dropped silently.
type TypingGate struct {
	mu     sync.Mutex
	period time.Duration
	now    func() time.Time
	last   map[string]time.Time
}

// NewTypingGate returns a gate; now is its clock.
func NewTypingGate(period time.Duration, now func() time.Time) *TypingGate {
	return &TypingGate{period: period, now: now, last: map[string]time.Time{}}
}

// Allow reports whether uid's typing in cv goes through now.
func (g *TypingGate) Allow(uid, cv string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	k := uid + "\x00" + cv
	if t, ok := g.last[k]; ok && now.Sub(t) < g.period {
		return false
	}
	if len(g.last) >= maxCached {
		for k, t := range g.last {
			if now.Sub(t) >= g.period {
				delete(g.last, k)
			}
		}
	}
	g.last[k] = now
	return true
}

// LeaveAppends are the appends of uid leaving group g (members recs, in
// order): when uid owns it and others stay, the owner role first passes
// to the first admin (or else the first other member); then the leave,
// which removes g from uid's conversation list. others are the members
// who stay; ok is false when uid is not a member. With no one staying
// the leave goes to uid's own stream (a purge of it may follow), so the
// event still gets a seq.
func LeaveAppends(g Group, recs map[string]Member, order []string, uid string) (as []*Append, others []string, ok bool) {
	me, ok := recs[uid]
	if !ok {
		return nil, nil, false
	}
	for _, u := range order {
		if u != uid {
			others = append(others, u)
		}
	}
	cv := g.CV()
	if me.Role == RoleOwner && len(others) > 0 {
		heir := others[0]
		for _, u := range others {
			if recs[u].Role == RoleAdmin {
				heir = u
				break
			}
		}
		r := recs[heir]
		r.Role = RoleOwner
		g.Owner = heir
		g.V++
		gc := g
		as = append(as, &Append{
			CV: cv, To: order, Group: &gc,
			Event:   Event{T: TMember, Op: "role", Who: []string{heir}, By: uid, Role: RoleOwner},
			Members: []MemberChange{{GID: g.GID, UID: heir, Rec: r}},
		})
	}
	g.N = len(others)
	g.V++
	to := others
	if len(to) == 0 {
		to = []string{uid}
	}
	as = append(as, &Append{
		CV: cv, To: to, Group: &g,
		Event:     Event{T: TMember, Op: "leave", Who: []string{uid}, By: uid},
		Members:   []MemberChange{{GID: g.GID, UID: uid, Rec: me, SetTo: true}},
		UserConvs: []UserConv{{UID: uid, CV: cv, Remove: true}},
	})
	return as, others, true
}

// Package relations caches who sees whom (PROTOCOL §10): C(uid) per user
// and the members of each group, read through the im ports. The ACL
// (topics.Relations), presence (watchers) and the messaging adapter
// (group recipients) share one Relations; the messaging adapter, which
// makes every change, invalidates what it changed. Peers caches the DM
// checks. Hooks never import each other: they share this package.
package relations

import (
	"log/slog"
	"sync"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Source is what Relations reads: the roster, blocks and group
// memberships.
type Source interface {
	Contacts(uid string) ([]string, error)
	Blocked(uid string) ([]string, error)
	BlockedBy(uid string) ([]string, error)
	Groups(uid string) ([]string, error)
	Members(gid string) (map[string]im.Member, []string, error)
}

// maxCached bounds each cache; past it the cache starts over.
const maxCached = 100_000

// Relations answers the §10 relationship questions from the store with an
// in-memory cache: it is asked on every delivery of im/p/x and im/k/x.
// The messaging adapter invalidates the users and groups it changes. It
// implements topics.Relations.
type Relations struct {
	st  Source
	log *slog.Logger

	mu      sync.Mutex
	deleted []func(uid string)         // UserDeleted's listeners
	gen     uint64                     // bumped by every Invalidate
	users   map[string]map[string]bool // uid → C(uid), blocks applied
	groups  map[string]*groupCache

	// OnInvalidate, when set before use, is told of every Invalidate
	// (a cluster node tells the other nodes, which Drop the same).
	OnInvalidate func(uids []string, gids []string)
	// OnDeleted, when set before use, is told of every UserDeleted (a
	// cluster node tells the other nodes, which call ForgetDeleted).
	OnDeleted func(uid string)
}

type groupCache struct {
	recs  map[string]im.Member
	order []string
}

var _ topics.Relations = (*Relations)(nil)

// New returns a Relations over st.
func New(st Source, log *slog.Logger) *Relations {
	if log == nil {
		log = slog.Default()
	}
	return &Relations{st: st, log: log, users: map[string]map[string]bool{}, groups: map[string]*groupCache{}}
}

// Visible reports whether other is in C(uid) and neither blocks the other.
func (r *Relations) Visible(uid, other string) bool {
	if uid == other {
		return true
	}
	v, err := r.visible(uid)
	if err != nil {
		r.log.Error("relations", "user", uid, "error", err)
		return false
	}
	return v[other]
}

// VisibleSet returns C(uid) minus blocks either way, uid itself excluded.
// The map is shared with the cache: callers must not modify it.
func (r *Relations) VisibleSet(uid string) (map[string]bool, error) {
	return r.visible(uid)
}

// Member reports whether uid is a current member of gid.
func (r *Relations) Member(uid, gid string) bool {
	g, err := r.group(gid)
	if err != nil {
		r.log.Error("relations", "group", gid, "error", err)
		return false
	}
	return g.recs[uid].Current()
}

// Members returns the current members of gid (uid order) and their
// records; both are shared with the cache and must not be modified.
func (r *Relations) Members(gid string) ([]string, map[string]im.Member, error) {
	g, err := r.group(gid)
	if err != nil {
		return nil, nil, err
	}
	return g.order, g.recs, nil
}

// Invalidate drops what is cached about the users and groups given.
func (r *Relations) Invalidate(uids []string, gids ...string) {
	r.Drop(uids, gids...)
	if r.OnInvalidate != nil {
		r.OnInvalidate(uids, gids)
	}
}

// Drop is Invalidate without telling OnInvalidate: for changes that
// another node made.
func (r *Relations) Drop(uids []string, gids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	for _, u := range uids {
		delete(r.users, u)
	}
	for _, g := range gids {
		delete(r.groups, g)
	}
}

// Flush forgets everything cached (a cluster node does so now and then,
// so that a change whose notice it missed is not cached for long).
func (r *Relations) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	clear(r.users)
	clear(r.groups)
}

// OnUserDeleted registers fn to be called by UserDeleted: caches kept
// elsewhere (the service's DM peers) forget a deleted account with it.
func (r *Relations) OnUserDeleted(fn func(uid string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = append(r.deleted, fn)
}

// UserDeleted tells every OnUserDeleted listener, and OnDeleted, that the
// account uid is gone. Call it after Invalidate of what the deletion
// changed.
func (r *Relations) UserDeleted(uid string) {
	r.ForgetDeleted(uid)
	if r.OnDeleted != nil {
		r.OnDeleted(uid)
	}
}

// ForgetDeleted is UserDeleted without telling OnDeleted: for an account
// another node deleted.
func (r *Relations) ForgetDeleted(uid string) {
	r.mu.Lock()
	fns := r.deleted
	r.mu.Unlock()
	for _, fn := range fns {
		fn(uid)
	}
}

func (r *Relations) group(gid string) (*groupCache, error) {
	r.mu.Lock()
	g, ok := r.groups[gid]
	gen := r.gen
	r.mu.Unlock()
	if ok {
		return g, nil
	}
	recs, order, err := r.st.Members(gid)
	if err != nil {
		return nil, err
	}
	g = &groupCache{recs: recs, order: order}
	r.mu.Lock()
	if len(r.groups) >= maxCached {
		clear(r.groups)
	}
	if r.gen == gen {
		r.groups[gid] = g
	}
	r.mu.Unlock()
	return g, nil
}

// visible computes C(uid) minus blocks either way. A result is cached
// only if no invalidation happened while it was computed.
func (r *Relations) visible(uid string) (map[string]bool, error) {
	r.mu.Lock()
	v, ok := r.users[uid]
	gen := r.gen
	r.mu.Unlock()
	if ok {
		return v, nil
	}
	v = map[string]bool{}
	cs, err := r.st.Contacts(uid)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		v[c] = true
	}
	gs, err := r.st.Groups(uid)
	if err != nil {
		return nil, err
	}
	for _, gid := range gs {
		g, err := r.group(gid)
		if err != nil {
			return nil, err
		}
		if !g.recs[uid].Current() {
			continue
		}
		for _, m := range g.order {
			v[m] = true
		}
	}
	for _, f := range []func(string) ([]string, error){r.st.Blocked, r.st.BlockedBy} {
		bs, err := f(uid)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			delete(v, b)
		}
	}
	delete(v, uid)
	r.mu.Lock()
	if len(r.users) >= maxCached {
		clear(r.users)
	}
	if r.gen == gen {
		r.users[uid] = v
	}
	r.mu.Unlock()
	return v, nil
}

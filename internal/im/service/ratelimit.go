package service

import (
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tern-im/tern/internal/im"
)

// Limits are the RPC rate limits and group caps (issue 9). A zero rate or
// burst means that limit is off; MaxGroupsOwned 0 means no cap.
type Limits struct {
	// ReadBurst and ReadPerSec size the per-device bucket of read RPCs.
	ReadBurst  int
	ReadPerSec float64
	// WriteBurst and WritePerMin size the per-device bucket of write RPCs.
	WriteBurst  int
	WritePerMin float64
	// MaxGroupsOwned caps the groups one user owns.
	MaxGroupsOwned int
	// AddsBurst and AddsPerHour size the per-user bucket of being added to
	// groups by someone else.
	AddsBurst   int
	AddsPerHour float64
	// Limited, if set, is told the name of each limit that refused
	// something (the adapter counts them in tern_limited_total).
	Limited func(limit string)
}

// readOps are the cheap RPCs, limited generously; every other op (group
// and contact changes, and unknown ops) is a write, limited strictly.
var readOps = map[string]bool{
	"hello": true, "sync": true, "history": true, "conv.list": true, "msg.get": true,
	"presence.get": true, "contacts.list": true, "group.members": true, "search": true,
	"file.stat": true, "file.get": true,
}

// rpcLimits holds the RPC buckets, the per-user bucket of group adds and
// the lock that makes the owned-groups count exact.
type rpcLimits struct {
	opts   Limits
	read   *keyedLimiter
	write  *keyedLimiter
	adds   *keyedLimiter
	owners stripes
}

func newRPCLimits(o Limits, now func() time.Time) *rpcLimits {
	return &rpcLimits{
		opts:  o,
		read:  newKeyedLimiter(rate.Limit(o.ReadPerSec), o.ReadBurst, now),
		write: newKeyedLimiter(rate.Limit(o.WritePerMin/60), o.WriteBurst, now),
		adds:  newKeyedLimiter(rate.Limit(o.AddsPerHour/3600), o.AddsBurst, now),
	}
}

func (l *rpcLimits) count(limit string) {
	if l.opts.Limited != nil {
		l.opts.Limited(limit)
	}
}

// allow takes a token for op from the device's read or write bucket: 429
// naming the op when it is empty.
func (l *rpcLimits) allow(d *Device, op string) error {
	lim, name := l.write, "rpc_write"
	if readOps[op] {
		lim, name = l.read, "rpc_read"
	}
	if lim.allow(d.UID + "." + d.DID) {
		return nil
	}
	l.count(name)
	return im.ErrRateLimited.Detail(": " + op)
}

// allowAdds takes a token from the bucket of every user in uids (users
// being added to a group by someone else), or from none: 429 naming the
// first user whose bucket is empty.
func (l *rpcLimits) allowAdds(uids []string) error {
	if u, ok := l.adds.allowEach(uids); !ok {
		l.count("group_adds")
		return im.ErrRateLimited.WithMsg("user " + u + " was added to too many groups recently")
	}
	return nil
}

// ownsTooMany reports whether uid already owns MaxGroupsOwned groups. A
// user in fewer groups than the cap is answered without reading a group.
func (s *Service) ownsTooMany(uid string) error {
	max := s.rpc.opts.MaxGroupsOwned
	if max == 0 {
		return nil
	}
	cvs, err := s.o.Store.UserConvs(uid)
	if err != nil {
		return err
	}
	var gids []string
	for _, cv := range cvs {
		if gid, ok := strings.CutPrefix(cv, "g:"); ok {
			gids = append(gids, gid)
		}
	}
	if len(gids) < max {
		return nil
	}
	owned := 0
	for _, gid := range gids {
		g, err := s.o.Store.Group(gid)
		if err != nil {
			continue // gone meanwhile
		}
		if g.Owner == uid {
			owned++
		}
	}
	if owned < max {
		return nil
	}
	s.rpc.count("groups_owned")
	return im.ErrOwnsTooMany
}

// maxCached bounds each limiter's map; past it refilled buckets are swept.
const maxCached = 100_000

// keyedLimiter is a token bucket (golang.org/x/time/rate) per key. Buckets
// that have refilled hold no state and are swept when the map grows. A
// zero rate and burst disable it.
type keyedLimiter struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	now   func() time.Time
	m     map[string]*rate.Limiter
}

func newKeyedLimiter(r rate.Limit, burst int, now func() time.Time) *keyedLimiter {
	return &keyedLimiter{limit: r, burst: burst, now: now, m: map[string]*rate.Limiter{}}
}

func (l *keyedLimiter) off() bool { return l.limit == 0 && l.burst == 0 }

// allow takes one token from key's bucket if it has one.
func (l *keyedLimiter) allow(key string) bool {
	_, ok := l.allowEach([]string{key})
	return ok
}

// allowEach takes one token from the bucket of every key if all have one,
// else none, and returns the first key without one.
func (l *keyedLimiter) allowEach(keys []string) (string, bool) {
	if l.off() || len(keys) == 0 {
		return "", true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		if l.get(k, now).TokensAt(now) < 1 {
			return k, false
		}
	}
	for _, k := range keys {
		l.m[k].AllowN(now, 1)
	}
	return "", true
}

func (l *keyedLimiter) get(k string, now time.Time) *rate.Limiter {
	b := l.m[k]
	if b == nil {
		if len(l.m) >= maxCached {
			for k, b := range l.m {
				if b.TokensAt(now) >= float64(l.burst) {
					delete(l.m, k)
				}
			}
		}
		b = rate.NewLimiter(l.limit, l.burst) // full
		l.m[k] = b
	}
	return b
}

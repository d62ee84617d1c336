package web

import (
	"sync"
	"time"
)

// throttle locks out logins after repeated failures, per user and per
// remote address: after max failures each further one doubles the lockout
// from base up to ceiling; a success clears the user's count. It mirrors
// the MQTT auth hook's rule (auth.max_failures, auth.lockout,
// auth.max_lockout) so HTTP is no cheaper way to guess a password.
type throttle struct {
	max           int
	base, ceiling time.Duration
	now           func() time.Time

	mu sync.Mutex
	m  map[string]*strikes
}

type strikes struct {
	n     int
	until time.Time
	last  time.Time
}

// maxTracked bounds the map; past it, entries idle for a ceiling go.
const maxTracked = 100_000

func newThrottle(max int, base, ceiling time.Duration, now func() time.Time) *throttle {
	return &throttle{max: max, base: base, ceiling: ceiling, now: now, m: map[string]*strikes{}}
}

// locked reports whether any of keys is locked out now.
func (t *throttle) locked(keys ...string) bool {
	if t.max <= 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, k := range keys {
		if s := t.m[k]; s != nil && now.Before(s.until) {
			return true
		}
	}
	return false
}

// failure counts a failed login against each key.
func (t *throttle) failure(keys ...string) {
	if t.max <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.m) >= maxTracked {
		for k, s := range t.m {
			if now.Sub(s.last) > t.ceiling {
				delete(t.m, k)
			}
		}
	}
	for _, k := range keys {
		s := t.m[k]
		if s == nil {
			s = &strikes{}
			t.m[k] = s
		}
		s.n++
		s.last = now
		if s.n >= t.max {
			d := t.base << min(s.n-t.max, 30)
			if d <= 0 || d > t.ceiling {
				d = t.ceiling
			}
			s.until = now.Add(d)
		}
	}
}

// success clears the counts of keys.
func (t *throttle) success(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.m, k)
	}
}

// Package session tracks who each live MQTT connection is. The auth hook
// adds a connection once its credentials check out; the other hooks look it
// up by the *mqtt.Client they are handed, or list a user's live devices.
// Each connection gets a server-wide generation number, increasing with
// every accepted CONNECT, so a late event of an older connection can be
// told from the current one.
package session

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Prefs are what a device negotiated in `hello` (im.Prefs).
type Prefs = im.Prefs

// DefaultPrefs apply until a device says hello.
var DefaultPrefs = im.DefaultPrefs

// Method is how a session authenticated.
type Method uint8

// Methods of authentication.
const (
	MethodNone     Method = iota // anonymous, or not said
	MethodPassword               // the account password
	MethodToken                  // a device token
)

// Session is one authenticated connection.
type Session struct {
	topics.Identity
	// Method is how the connection authenticated: a password change
	// ends the sessions that used the old password.
	Method    Method
	Gen       uint64
	Client    *mqtt.Client
	Remote    string
	Listener  string
	Connected time.Time
	prefs     atomic.Pointer[Prefs]
	gone      chan struct{}
}

// Gone is closed once the session has been removed from the registry.
func (s *Session) Gone() <-chan struct{} { return s.gone }

// Prefs returns the device's negotiated preferences.
func (s *Session) Prefs() Prefs {
	if p := s.prefs.Load(); p != nil {
		return *p
	}
	return DefaultPrefs
}

// SetPrefs records what the device said in hello.
func (s *Session) SetPrefs(p Prefs) { s.prefs.Store(&p) }

// Registry maps live connections to their sessions. It is safe for
// concurrent use.
type Registry struct {
	gen      atomic.Uint64
	mu       sync.RWMutex
	byConn   map[*mqtt.Client]*Session
	byUser   map[string]map[*mqtt.Client]*Session
	onRemove []func(*Session)
	onAdd    []func(*Session)
}

// OnAdd registers fn to run after a session is added (a cluster node
// tells the other nodes, which end their older connection of the same
// device). fn runs outside the registry's lock, on the connecting
// client's goroutine; register before the broker starts.
func (r *Registry) OnAdd(fn func(*Session)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onAdd = append(r.onAdd, fn)
}

// OnRemove registers fn to run after a session is removed, whether by the
// auth hook's OnDisconnect or by its sweep of connections mochi closed
// without one (a failed CONNACK write). Hooks that track connections
// themselves use it instead of sweeping again. fn runs outside the
// registry's lock; register before the broker starts.
func (r *Registry) OnRemove(fn func(*Session)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onRemove = append(r.onRemove, fn)
}

// NewRegistry returns an empty registry whose generations start after
// start (pass a persisted high-water mark to keep them increasing across
// restarts).
func NewRegistry(start uint64) *Registry {
	r := &Registry{byConn: map[*mqtt.Client]*Session{}, byUser: map[string]map[*mqtt.Client]*Session{}}
	r.gen.Store(start)
	return r
}

// Add records an authenticated connection and assigns its generation.
func (r *Registry) Add(cl *mqtt.Client, id topics.Identity) *Session {
	return r.AddVia(cl, id, MethodNone)
}

// AddVia is Add for a connection that authenticated with method m.
func (r *Registry) AddVia(cl *mqtt.Client, id topics.Identity, m Method) *Session {
	s := &Session{
		Identity:  id,
		Method:    m,
		Gen:       r.gen.Add(1),
		Client:    cl,
		Remote:    cl.Net.Remote,
		Listener:  cl.Net.Listener,
		Connected: time.Now(),
		gone:      make(chan struct{}),
	}
	r.mu.Lock()
	r.byConn[cl] = s
	if !id.Anonymous {
		m := r.byUser[id.UID]
		if m == nil {
			m = map[*mqtt.Client]*Session{}
			r.byUser[id.UID] = m
		}
		m[cl] = s
	}
	fns := r.onAdd
	r.mu.Unlock()
	for _, fn := range fns {
		fn(s)
	}
	return s
}

// Get returns the session of a connection.
func (r *Registry) Get(cl *mqtt.Client) (*Session, bool) {
	r.mu.RLock()
	s, ok := r.byConn[cl]
	r.mu.RUnlock()
	return s, ok
}

// Remove forgets a connection and reports whether it was registered.
func (r *Registry) Remove(cl *mqtt.Client) bool {
	r.mu.Lock()
	s, ok := r.byConn[cl]
	if ok {
		delete(r.byConn, cl)
		if m := r.byUser[s.UID]; m != nil {
			delete(m, cl)
			if len(m) == 0 {
				delete(r.byUser, s.UID)
			}
		}
	}
	fns := r.onRemove
	r.mu.Unlock()
	if ok {
		close(s.gone)
		for _, fn := range fns {
			fn(s)
		}
	}
	return ok
}

// Closed lists the registered connections that have closed.
func (r *Registry) Closed() []*mqtt.Client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*mqtt.Client
	for cl := range r.byConn {
		if cl.Closed() {
			out = append(out, cl)
		}
	}
	return out
}

// Len returns the number of registered connections.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byConn)
}

// Devices returns the live sessions of uid, one per device: while a
// session is being taken over (same ClientID reconnecting) only the newest
// generation is listed, so nothing is delivered twice.
func (r *Registry) Devices(uid string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := r.byUser[uid]
	out := make([]*Session, 0, len(m))
	for _, s := range m {
		dup := false
		for i, o := range out {
			if o.DID == s.DID {
				dup = true
				if s.Gen > o.Gen {
					out[i] = s
				}
				break
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

// Online reports whether uid has at least one live session.
func (r *Registry) Online(uid string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byUser[uid]) > 0
}

// Generation returns the last generation handed out.
func (r *Registry) Generation() uint64 { return r.gen.Load() }

// Raise makes every later generation greater than g: a cluster node
// raises its own past the generations the other nodes hand out, so that
// a device's newer connection has the greater generation wherever it is.
func (r *Registry) Raise(g uint64) {
	for {
		cur := r.gen.Load()
		if cur >= g || r.gen.CompareAndSwap(cur, g) {
			return
		}
	}
}

// Range calls fn for each live session until fn returns false. fn must not
// call back into the registry.
func (r *Registry) Range(fn func(cl *mqtt.Client, s *Session) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for cl, s := range r.byConn {
		if !fn(cl, s) {
			return
		}
	}
}

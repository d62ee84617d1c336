// Package session tracks who each live MQTT connection is. The auth hook
// adds a connection once its credentials check out; the other hooks look it
// up by the *mqtt.Client they are handed. Each connection gets a
// server-wide generation number, increasing with every accepted CONNECT,
// so a late event of an older connection can be told from the current one.
package session

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/tern-im/tern/topics"
)

// Session is one authenticated connection.
type Session struct {
	topics.Identity
	Gen       uint64
	Remote    string
	Listener  string
	Connected time.Time
}

// Registry maps live connections to their sessions. It is safe for
// concurrent use.
type Registry struct {
	gen atomic.Uint64
	m   sync.Map // *mqtt.Client -> *Session
}

// NewRegistry returns an empty registry whose generations start after
// start (pass a persisted high-water mark to keep them increasing across
// restarts).
func NewRegistry(start uint64) *Registry {
	r := new(Registry)
	r.gen.Store(start)
	return r
}

// Add records an authenticated connection and assigns its generation.
func (r *Registry) Add(cl *mqtt.Client, id topics.Identity) *Session {
	s := &Session{
		Identity:  id,
		Gen:       r.gen.Add(1),
		Remote:    cl.Net.Remote,
		Listener:  cl.Net.Listener,
		Connected: time.Now(),
	}
	r.m.Store(cl, s)
	return s
}

// Get returns the session of a connection.
func (r *Registry) Get(cl *mqtt.Client) (*Session, bool) {
	v, ok := r.m.Load(cl)
	if !ok {
		return nil, false
	}
	return v.(*Session), true
}

// Remove forgets a connection.
func (r *Registry) Remove(cl *mqtt.Client) { r.m.Delete(cl) }

// Generation returns the last generation handed out.
func (r *Registry) Generation() uint64 { return r.gen.Load() }

// Range calls fn for each live session until fn returns false.
func (r *Registry) Range(fn func(cl *mqtt.Client, s *Session) bool) {
	r.m.Range(func(k, v any) bool { return fn(k.(*mqtt.Client), v.(*Session)) })
}

package session

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/tern-im/tern/topics"
)

func client(id string) *mqtt.Client {
	cl := &mqtt.Client{ID: id}
	return cl
}

func TestRegistryDevicesAndTakeover(t *testing.T) {
	t.Parallel()
	r := NewRegistry(100)
	old := client("alice.p1")
	tab := client("alice.tab")
	s1 := r.Add(old, topics.Identity{UID: "alice", DID: "p1"})
	r.Add(tab, topics.Identity{UID: "alice", DID: "tab"})
	r.Add(client("anon"), topics.Identity{Anonymous: true})
	if s1.Gen != 101 {
		t.Fatalf("first generation %d, want 101", s1.Gen)
	}
	// The same device reconnects before the old connection is gone.
	neu := client("alice.p1")
	s3 := r.Add(neu, topics.Identity{UID: "alice", DID: "p1"})
	if s3.Gen <= s1.Gen {
		t.Fatalf("generation did not increase: %d after %d", s3.Gen, s1.Gen)
	}
	devs := r.Devices("alice")
	if len(devs) != 2 {
		t.Fatalf("Devices = %d sessions, want 2 (one per device)", len(devs))
	}
	for _, d := range devs {
		if d.DID == "p1" && d.Gen != s3.Gen {
			t.Fatalf("takeover listed the old session (gen %d)", d.Gen)
		}
	}
	r.Remove(old)
	if !r.Online("alice") || len(r.Devices("alice")) != 2 {
		t.Fatal("removing the taken-over session dropped a live device")
	}
	if got, ok := r.Get(neu); !ok || got != s3 {
		t.Fatal("Get lost the new session")
	}
	r.Remove(neu)
	r.Remove(tab)
	if r.Online("alice") || len(r.Devices("alice")) != 0 {
		t.Fatal("alice still online")
	}
	if r.Generation() != s3.Gen {
		t.Fatalf("Generation = %d", r.Generation())
	}
}

func TestPrefs(t *testing.T) {
	t.Parallel()
	r := NewRegistry(0)
	s := r.Add(client("bob.p1"), topics.Identity{UID: "bob", DID: "p1"})
	if s.Prefs() != DefaultPrefs {
		t.Fatalf("prefs before hello = %+v", s.Prefs())
	}
	s.SetPrefs(Prefs{CBOR: true, MaxPkt: 4096})
	if p := s.Prefs(); !p.CBOR || p.MaxPkt != 4096 || p.Typing {
		t.Fatalf("prefs = %+v", p)
	}
}

func TestOnRemove(t *testing.T) {
	t.Parallel()
	r := NewRegistry(0)
	var got []*Session
	r.OnRemove(func(s *Session) { got = append(got, s) })
	cl := client("alice.p1")
	s := r.Add(cl, topics.Identity{UID: "alice", DID: "p1"})
	if !r.Remove(cl) || r.Remove(cl) {
		t.Fatal("Remove reported wrongly")
	}
	if len(got) != 1 || got[0] != s {
		t.Fatalf("callbacks %v, want the removed session once", got)
	}
}

// TestRaise: a generation seen on another node raises the next ones
// past it; a lower one changes nothing.
func TestRaise(t *testing.T) {
	t.Parallel()
	r := NewRegistry(100)
	r.Raise(5 << 40)
	if s := r.Add(client("a.p1"), topics.Identity{UID: "a", DID: "p1"}); s.Gen != 5<<40+1 {
		t.Fatalf("after Raise: gen %d, want %d", s.Gen, 5<<40+1)
	}
	r.Raise(7)
	if s := r.Add(client("a.p2"), topics.Identity{UID: "a", DID: "p2"}); s.Gen != 5<<40+2 {
		t.Fatalf("after a lower Raise: gen %d, want %d", s.Gen, 5<<40+2)
	}
}

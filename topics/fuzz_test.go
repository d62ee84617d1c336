package topics

import (
	"strings"
	"testing"
)

func FuzzParseClientID(f *testing.F) {
	for _, s := range []string{"alice.p1", "a.b.c", ".", "sys.x", "ä.b", "a/b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		uid, did, err := ParseClientID(s)
		if err != nil {
			return
		}
		// Valid ids never carry topic syntax and round-trip.
		if strings.ContainsAny(uid+did, "/+#.$ \x00") || ClientID(uid, did) != s {
			t.Fatalf("ParseClientID(%q) = %q, %q", s, uid, did)
		}
		if CheckUID(uid) != nil || CheckDID(did) != nil {
			t.Fatalf("accepted invalid ids %q %q", uid, did)
		}
	})
}

func FuzzParseUp(f *testing.F) {
	for _, s := range []string{"im/up/alice/p1/msg", "im/up/a/b/f/01J9Z3K8Q4W6X2M7N5P0R8T1VB/7", "im/up//x/msg", "im/up/a/b/f/x/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, ok := ParseUp(s)
		if !ok {
			return
		}
		var back string
		if u.Kind == UpFile {
			back = Up(u.UID, u.DID, UpFile) + "/" + u.FID + "/" + itoa(u.Chunk)
		} else {
			back = Up(u.UID, u.DID, u.Kind)
		}
		if back != s {
			t.Fatalf("ParseUp(%q) = %+v, rebuilds as %q", s, u, back)
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// FuzzAllow checks the ACL decision's invariants on arbitrary topics: it
// never panics, never lets a user publish outside its own upstream tree in
// im/, never grants wildcard access in im/ beyond the own device filter,
// never opens $ topics to non-admins for reading, and never shares im/.
func FuzzAllow(f *testing.F) {
	for _, s := range []string{"im/u/alice/d/p1/#", "im/p/bob", "$SYS/#", "#", "im/up/alice/p1/msg", "public/x", "im/u/alice/d/p1/+"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	p := &Policy{Relations: rel{}, Rules: []Rule{{Filter: "#", Access: ReadWrite, Users: []string{"all"}, Anonymous: true}}}
	id := Identity{UID: "alice", DID: "p1"}
	f.Fuzz(func(t *testing.T, topic string, write bool) {
		ok := p.Allow(id, topic, write)
		if !ok {
			return
		}
		switch {
		case strings.HasPrefix(topic, "$share/"):
			f := strings.SplitN(topic, "/", 3)
			if write || len(f) < 3 || strings.HasPrefix(f[2], "$") || strings.HasPrefix(f[2], "im/") || f[2] == "im" {
				t.Fatalf("shared subscription granted: %q write=%v", topic, write)
			}
		case strings.HasPrefix(topic, "$"):
			// Writes under $ are a sink (never routed); reads are closed.
			if !write || strings.HasPrefix(topic, "$SYS") {
				t.Fatalf("non-admin granted %q write=%v", topic, write)
			}
		case strings.HasPrefix(topic, "im/") || topic == "im":
			if write && !strings.HasPrefix(topic, "im/up/alice/p1/") {
				t.Fatalf("write granted to %q", topic)
			}
			if HasWildcard(topic) && topic != "im/u/alice/d/p1/#" {
				t.Fatalf("wildcard granted in im/: %q", topic)
			}
			if !write && strings.HasPrefix(topic, "im/u/") && !strings.HasPrefix(topic, "im/u/alice/d/p1/") {
				t.Fatalf("foreign device tree granted: %q", topic)
			}
		}
	})
}

func FuzzCovers(f *testing.F) {
	f.Add("a/#", "a/b")
	f.Add("+/+", "a/b")
	f.Fuzz(func(t *testing.T, filter, sub string) {
		got := Covers(filter, sub)
		// A topic name matches itself; # matches every name not under $.
		if !HasWildcard(sub) && !Covers(sub, sub) {
			t.Fatalf("%q does not match itself", sub)
		}
		if !strings.HasPrefix(sub, "$") && !Covers("#", sub) {
			t.Fatalf("# does not cover %q", sub)
		}
		// Only a filter ending in # covers "#" (rules with # elsewhere
		// are refused by the config loader).
		if i := strings.IndexByte(filter, '#'); i >= 0 && i != len(filter)-1 {
			return
		}
		if sub == "#" && got && !strings.HasSuffix(filter, "#") {
			t.Fatalf("%q claims to cover #", filter)
		}
	})
}

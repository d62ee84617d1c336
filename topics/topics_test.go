package topics

import (
	"strings"
	"testing"
)

func TestCheckIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		id       string
		uid, did bool
	}{
		{"simple", "alice", true, true},
		{"digits and dashes", "a1_b-2", true, true},
		{"starts with digit", "9lives", true, true},
		{"empty", "", false, false},
		{"upper case", "Alice", false, false},
		{"leading dash", "-x", false, false},
		{"leading underscore", "_x", false, false},
		{"slash", "a/b", false, false},
		{"plus", "a+", false, false},
		{"hash", "a#", false, false},
		{"dot", "a.b", false, false},
		{"space", "a b", false, false},
		{"unicode", "ünï", false, false},
		{"reserved all", "all", false, true},
		{"reserved admin", "admin", false, true},
		{"16 chars", strings.Repeat("d", 16), true, true},
		{"17 chars", strings.Repeat("d", 17), true, false},
		{"32 chars", strings.Repeat("u", 32), true, false},
		{"33 chars", strings.Repeat("u", 33), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckUID(tt.id) == nil; got != tt.uid {
				t.Errorf("CheckUID(%q) ok = %v, want %v", tt.id, got, tt.uid)
			}
			if got := CheckDID(tt.id) == nil; got != tt.did {
				t.Errorf("CheckDID(%q) ok = %v, want %v", tt.id, got, tt.did)
			}
		})
	}
}

func TestParseClientID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		uid, did string
		ok       bool
	}{
		{"alice.p1", "alice", "p1", true},
		{"alice", "", "", false},
		{"alice.", "", "", false},
		{".p1", "", "", false},
		{"alice.p1.x", "", "", false},
		{"alice.P1", "", "", false},
		{"sys.p1", "", "", false},
		{"a/b.p1", "", "", false},
	}
	for _, tt := range tests {
		uid, did, err := ParseClientID(tt.in)
		if (err == nil) != tt.ok || uid != tt.uid || did != tt.did {
			t.Errorf("ParseClientID(%q) = %q, %q, %v; want %q, %q, ok=%v", tt.in, uid, did, err, tt.uid, tt.did, tt.ok)
		}
	}
}

func TestParseUp(t *testing.T) {
	t.Parallel()
	const fid = "01J9Z3K8Q4W6X2M7N5P0R8T1VB"
	tests := []struct {
		topic string
		want  Upstream
		ok    bool
	}{
		{"im/up/alice/p1/msg", Upstream{UID: "alice", DID: "p1", Kind: UpMsg}, true},
		{"im/up/alice/p1/rpc", Upstream{UID: "alice", DID: "p1", Kind: UpRPC}, true},
		{"im/up/alice/p1/pres", Upstream{UID: "alice", DID: "p1", Kind: UpPres}, true},
		{"im/up/alice/p1/f/" + fid + "/3", Upstream{UID: "alice", DID: "p1", Kind: UpFile, FID: fid, Chunk: 3}, true},
		{"im/up/alice/p1/f/" + fid + "/03", Upstream{}, false},
		{"im/up/alice/p1/f/" + fid + "/-1", Upstream{}, false},
		{"im/up/alice/p1/f/notaulid/1", Upstream{}, false},
		{"im/up/alice/p1/msg/extra", Upstream{}, false},
		{"im/up/alice/p1/nope", Upstream{}, false},
		{"im/up/alice/p1", Upstream{}, false},
		{"im/up/Alice/p1/msg", Upstream{}, false},
		{"im/u/alice/d/p1/in", Upstream{}, false},
		{"", Upstream{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseUp(tt.topic)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("ParseUp(%q) = %+v, %v; want %+v, %v", tt.topic, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		filter, sub string
		want        bool
	}{
		{"#", "a/b", true},
		{"#", "a/+/c", true},
		{"#", "$SYS/x", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "a/#", true},
		{"a/#", "#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a/b/c", false},
		{"a/b", "a/+", false},
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a", "a/b", false},
		{"+/b", "x/b", true},
		{"+", "", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	}
	for _, tt := range tests {
		if got := Covers(tt.filter, tt.sub); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.filter, tt.sub, got, tt.want)
		}
	}
}

// rel is a fixed Relations for tests: alice sees bob; alice is in ops.
type rel struct{}

func (rel) Visible(uid, other string) bool { return uid == "alice" && other == "bob" }
func (rel) Member(uid, gid string) bool    { return uid == "alice" && gid == "ops" }

func TestPolicyAllow(t *testing.T) {
	t.Parallel()
	p := &Policy{
		Relations: rel{},
		Rules: []Rule{
			{Filter: "test/nosubscribe", Access: Deny, Users: []string{"all"}, Anonymous: true},
			{Filter: "dev/{uid}/#", Access: ReadWrite, Users: []string{"all"}},
			{Filter: "tele/#", Access: Write, Users: []string{"alice"}},
			{Filter: "tele/#", Access: Read, Users: []string{"ops"}},
			{Filter: "public/#", Access: ReadWrite, Users: []string{"all"}, Anonymous: true},
		},
	}
	alice := Identity{UID: "alice", DID: "p1"}
	admin := Identity{UID: "root", DID: "c1", Admin: true}
	anon := Identity{Anonymous: true}
	ops := Identity{UID: "ops", DID: "d1"}
	tests := []struct {
		name  string
		id    Identity
		topic string
		write bool
		want  bool
	}{
		{"own device filter", alice, "im/u/alice/d/p1/#", false, true},
		{"own device child", alice, "im/u/alice/d/p1/in", false, true},
		{"own device deep child", alice, "im/u/alice/d/p1/f/01J9Z3K8Q4W6X2M7N5P0R8T1VB/2", false, true},
		{"own device + child", alice, "im/u/alice/d/p1/+", false, false},
		{"own device mid #", alice, "im/u/alice/d/p1/f/#", false, false},
		{"other device of self", alice, "im/u/alice/d/p2/#", false, false},
		{"other user", alice, "im/u/bob/d/p1/#", false, false},
		{"user wildcard", alice, "im/u/+/d/+/in", false, false},
		{"hash", alice, "#", false, false},
		{"im hash", alice, "im/#", false, false},
		{"own presence", alice, "im/p/alice", false, true},
		{"contact presence", alice, "im/p/bob", false, true},
		{"stranger presence", alice, "im/p/carol", false, false},
		{"presence wildcard", alice, "im/p/+", false, false},
		{"contact keys", alice, "im/k/bob", false, true},
		{"stranger keys", alice, "im/k/carol", false, false},
		{"group meta member", alice, "im/g/ops/meta", false, true},
		{"group meta stranger", alice, "im/g/dev/meta", false, false},
		{"sys server", alice, "im/sys/server", false, true},
		{"sys notice", alice, "im/sys/notice", false, true},
		{"sys other", alice, "im/sys/secret", false, false},
		{"publish own up", alice, "im/up/alice/p1/msg", true, true},
		{"publish own up file", alice, "im/up/alice/p1/f/01J9Z3K8Q4W6X2M7N5P0R8T1VB/0", true, true},
		{"publish other device up", alice, "im/up/alice/p2/msg", true, false},
		{"publish other user up", alice, "im/up/bob/p1/msg", true, false},
		{"publish downstream", alice, "im/u/bob/d/p1/in", true, false},
		{"publish presence", alice, "im/p/alice", true, false},
		{"publish sys", alice, "im/sys/notice", true, false},
		{"subscribe upstream", alice, "im/up/alice/p1/msg", false, false},
		{"share own device tree", alice, "$share/g/im/u/alice/d/p1/#", false, false},
		{"share plain allowed", alice, "$share/g/public/#", false, true},
		{"share plain anon", anon, "$share/workers/public/x", false, true},
		{"share plain denied", alice, "$share/g/random/#", false, false},
		{"share everything", alice, "$share/g/#", false, false},
		{"share sys", admin, "$share/g/$SYS/#", false, false},
		{"share no filter", alice, "$share/g", false, false},
		{"share wildcard group", alice, "$share/+/public/x", false, false},
		{"share publish", alice, "$share/g/public/x", true, false},
		{"sys for user", alice, "$SYS/#", false, false},
		{"sys for admin", admin, "$SYS/#", false, true},
		{"sys write admin", admin, "$SYS/x", true, false},
		{"dollar write is a sink", alice, "$TopicA/x", true, true},
		{"dollar read", alice, "$TopicA/x", false, false},
		{"$im", alice, "$im/will/alice/p1", false, false},
		{"$im admin", admin, "$im/#", false, false},
		{"plain deny first", alice, "test/nosubscribe", false, false},
		{"plain uid rule own", alice, "dev/alice/temp", true, true},
		{"plain uid rule other", alice, "dev/bob/temp", true, false},
		{"plain uid rule sub", alice, "dev/alice/#", false, true},
		{"plain uid rule wide sub", alice, "dev/#", false, false},
		{"plain write only", alice, "tele/x", true, true},
		{"plain write-only not readable", alice, "tele/x", false, false},
		{"plain read only", ops, "tele/#", false, true},
		{"plain read only no write", ops, "tele/x", true, false},
		{"plain public anon", anon, "public/x", true, true},
		{"plain anon elsewhere", anon, "dev/x/y", true, false},
		{"anon im", anon, "im/sys/server", false, false},
		{"anon deny rule", anon, "test/nosubscribe", false, false},
		{"no rule", alice, "random/topic", false, false},
		{"publish wildcard plain", alice, "public/#", true, false},
		{"empty", alice, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Allow(tt.id, tt.topic, tt.write); got != tt.want {
				t.Errorf("Allow(%+v, %q, write=%v) = %v, want %v", tt.id, tt.topic, tt.write, got, tt.want)
			}
		})
	}
}

func TestNilRelationsGrantsOnlyOwn(t *testing.T) {
	t.Parallel()
	p := &Policy{}
	id := Identity{UID: "alice", DID: "p1"}
	if !p.Allow(id, "im/p/alice", false) {
		t.Error("own presence refused")
	}
	if p.Allow(id, "im/p/bob", false) || p.Allow(id, "im/g/ops/meta", false) {
		t.Error("nil Relations granted a foreign topic")
	}
}

func TestHoldsRetained(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		filter string
		want   bool
	}{
		{DeviceFilter("alice", "p1"), false},
		{Device("alice", "p1", ChanIn), false},
		{"im/u/#", false},
		{Presence("bob"), true},
		{GroupMeta("g1"), true},
		{SysServer, true},
		{"im/#", true},
		{"#", true},
		{"sensors/t1", true},
	} {
		if got := HoldsRetained(tt.filter); got != tt.want {
			t.Errorf("HoldsRetained(%q) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

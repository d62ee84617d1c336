package messaging_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
)

// untilLimited repeats an RPC until it fails and returns how many
// succeeded, how long that took, and the error that ended it.
func untilLimited(d *dev, op string, args func(i int) any, upTo int) (int, time.Duration, reply) {
	d.t.Helper()
	start := time.Now()
	for i := range upTo {
		if r := d.call(op, args(i)); !r.OK {
			return i, time.Since(start), r
		}
	}
	d.t.Fatalf("%s: %d calls, none refused", op, upTo)
	return 0, 0, reply{}
}

// within fails unless n calls passed a bucket of burst refilling at
// perSec over elapsed: exactly the burst, plus what refilled meanwhile.
func within(t *testing.T, what string, n, burst int, perSec float64, elapsed time.Duration) {
	t.Helper()
	if hi := burst + int(perSec*elapsed.Seconds()) + 1; n < burst || n > hi {
		t.Fatalf("%s: %d calls passed in %v, want %d..%d", what, n, elapsed, burst, hi)
	}
}

// TestRPCRateLimit: reads and writes have separate per-device buckets;
// beyond them the reply is err 429 naming the op, and other devices are
// unaffected. On the old code 3,000 group.create passed in 3 s.
func TestRPCRateLimit(t *testing.T) {
	t.Parallel()
	const readBurst, writeBurst = 8, 4
	b := brokertest.Start(t, func(c *config.Config) {
		c.IM.RPCReadBurst, c.IM.RPCReadPerSec = readBurst, 1
		c.IM.RPCWriteBurst, c.IM.RPCWritePerMin = writeBurst, 1
	})
	users(b, "alice")
	a1, a2 := connect(t, b, "alice", "p1"), connect(t, b, "alice", "p2")

	n, took, r := untilLimited(a1, "group.create", func(i int) any { return map[string]any{"gid": fmt.Sprint("g", i)} }, 50)
	within(t, "writes", n, writeBurst, 1.0/60, took)
	if r.Err == nil || r.Err.Code != 429 || !strings.Contains(r.Err.Msg, "group.create") {
		t.Fatalf("write refusal %+v", r.Err)
	}
	n, took, r = untilLimited(a1, "conv.list", func(int) any { return map[string]any{} }, 100)
	within(t, "reads", n, readBurst, 1, took)
	if r.Err == nil || r.Err.Code != 429 || !strings.Contains(r.Err.Msg, "conv.list") {
		t.Fatalf("read refusal %+v", r.Err)
	}
	// The other device of the same user has its own buckets.
	a2.ok("conv.list", map[string]any{}, nil)
	a2.ok("contacts.list", map[string]any{}, nil)
	a2.ok("group.create", map[string]any{"gid": "other"}, nil)
}

// TestGroupCaps: a user owns at most im.max_groups_owned groups (403),
// and can be added to groups by others at most im.group_adds_burst times
// before the adder gets 429 (on the old code 1,000 groups were built
// around an unwilling user in 0.4 s).
func TestGroupCaps(t *testing.T) {
	t.Parallel()
	const owned, adds = 5, 4
	b := brokertest.Start(t, func(c *config.Config) {
		c.IM.MaxGroupsOwned = owned
		c.IM.GroupAddsBurst, c.IM.GroupAddsPerHour = adds, 1
	})
	users(b, "mallory", "bob", "carol", "olga")

	t.Run("owned", func(t *testing.T) {
		o, c := connect(t, b, "olga", "o1"), connect(t, b, "carol", "c1")
		for i := range owned {
			o.ok("group.create", map[string]any{"gid": fmt.Sprint("olga", i)}, nil)
		}
		o.fail("group.create", map[string]any{"gid": "olga-x"}, 403)
		// Leaving one (she is its only member) frees a slot.
		o.ok("group.leave", map[string]any{"gid": "olga0"}, nil)
		o.ok("group.create", map[string]any{"gid": "olga-y"}, nil)
		// Handing her a group she would own beyond the cap is refused too.
		c.ok("group.create", map[string]any{"gid": "carols", "members": []string{"olga"}}, nil)
		c.fail("group.role", map[string]any{"gid": "carols", "uid": "olga", "role": "owner"}, 403)
	})
	t.Run("adds", func(t *testing.T) {
		m := connect(t, b, "mallory", "m1")
		bob := connect(t, b, "bob", "b1")
		for i := range adds - 1 {
			m.ok("group.create", map[string]any{"gid": fmt.Sprint("trap", i), "members": []string{"bob"}}, nil)
		}
		m.ok("group.create", map[string]any{"gid": "trap-add"}, nil)
		m.ok("group.add", map[string]any{"gid": "trap-add", "uids": []string{"bob"}}, nil)
		r := m.call("group.create", map[string]any{"gid": "trap-x", "members": []string{"bob"}})
		if r.OK || r.Err.Code != 429 || !strings.Contains(r.Err.Msg, "bob") {
			t.Fatalf("create around bob: %+v", r)
		}
		m.ok("group.create", map[string]any{"gid": "trap-add2"}, nil)
		m.fail("group.add", map[string]any{"gid": "trap-add2", "uids": []string{"carol", "bob"}}, 429)
		// Refused as a whole: carol was not added either.
		var mr struct {
			Members []struct{ UID string } `json:"members"`
		}
		m.ok("group.members", map[string]any{"gid": "trap-add2"}, &mr)
		if len(mr.Members) != 1 {
			t.Fatalf("members %+v", mr)
		}
		// Bob creating his own group is not an add by others.
		bob.ok("group.create", map[string]any{"gid": "bobs"}, nil)
	})
}

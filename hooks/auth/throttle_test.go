package auth

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestThrottleOwnSuccessKeepsAddress: an attacker's successful login to
// their own account does not reset the failures counted against their
// address (it did on the old code, which deleted "a:"+addr on success).
func TestThrottleOwnSuccessKeepsAddress(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	th := newThrottle(2, time.Minute, time.Hour)
	const evil = "203.0.113.9"
	// Spread over many victims so no (address, user) pair locks first.
	for i := range 2*addrFactor - 1 {
		if i%2 == 0 {
			th.success("mallory", evil, now)
		}
		th.failure("victim"+string(rune('a'+i)), evil, now)
	}
	if th.lockedPassword("victimz", evil, now) {
		t.Fatal("locked before the address budget is spent")
	}
	th.success("mallory", evil, now)
	th.failure("victimz", evil, now)
	if !th.lockedPassword("anyone", evil, now) {
		t.Fatal("the address is not locked: the attacker's own success reset it")
	}
}

// TestThrottleUserLockout: failures for bob from several addresses lock
// password logins for bob from new addresses, but not from the address
// bob last logged in from, and the attacker cannot clear bob's counter
// with successes of their own; bob's success clears it. A lone address
// is locked for bob after max failures without locking bob elsewhere.
func TestThrottleUserLockout(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	th := newThrottle(2, time.Minute, time.Hour)
	const home = "198.51.100.1"
	th.success("bob", home, now)

	th.failure("bob", "203.0.113.1", now)
	th.failure("bob", "203.0.113.1", now)
	if !th.lockedPassword("bob", "203.0.113.1", now) {
		t.Fatal("(address, bob) not locked after max failures")
	}
	if th.lockedPassword("bob", "192.0.2.1", now) {
		t.Fatal("one address locked bob everywhere")
	}
	for i := 2; i < 2*addrFactor; i++ {
		addr := "203.0.113." + string(rune('0'+i))
		th.failure("bob", addr, now)
		th.success("mallory", addr, now)
	}
	if !th.lockedPassword("bob", "192.0.2.1", now) {
		t.Fatal("bob is not locked from a new address after failures from many")
	}
	if th.lockedPassword("bob", home, now) {
		t.Fatal("bob is locked out from his own address")
	}
	if th.lockedPassword("mallory", "192.0.2.1", now) {
		t.Fatal("another user is locked")
	}
	th.success("bob", home, now)
	if th.lockedPassword("bob", "192.0.2.1", now) {
		t.Fatal("bob's success did not clear his counter")
	}
}

// TestThrottleDecays: the address counter is forgotten after MaxLockout
// without failures, not by a success; and a bad token locks nothing but
// the address's token budget.
func TestThrottleDecays(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	th := newThrottle(2, time.Minute, time.Hour)
	const addr = "203.0.113.9"
	for i := range 2*addrFactor - 1 {
		th.failure("u"+string(rune('a'+i)), addr, now)
	}
	later := now.Add(2 * time.Hour)
	th.failure("uz", addr, later)
	if th.lockedPassword("other", addr, later) {
		t.Fatal("old failures still counted after a quiet period")
	}
	for i := range 2 * addrFactor {
		locked := th.tokenFailure(addr, later)
		if want := i+1 >= 2*addrFactor; locked != want {
			t.Fatalf("token failure %d: locked %v", i+1, locked)
		}
	}
	if th.lockedPassword("other", addr, later) {
		t.Fatal("bad tokens locked password logins")
	}
}

// TestRefusalLogAggregated: a flood of refusals from one address makes
// one INFO line at once and one summary per period, not one per refusal
// (2,900 lines a minute from one attacker on the old code); addresses
// past the bound are summed up in one line.
func TestRefusalLogAggregated(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r := newRefusalLog(2)
	for range 1000 {
		r.refused(log, "203.0.113.9", "bad_credentials", "remote", "203.0.113.9:1")
	}
	r.refused(log, "203.0.113.9", "throttled", "remote", "203.0.113.9:1")
	r.refused(log, "198.51.100.1", "bad_token", "remote", "198.51.100.1:1")
	for range 5 {
		r.refused(log, "192.0.2.1", "bad_credentials", "remote", "192.0.2.1:1")
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines before the summary:\n%s", n, buf.String())
	}
	buf.Reset()
	r.flush(log)
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("%d summary lines:\n%s", n, out)
	}
	for _, want := range []string{`remote=203.0.113.9 count=1000 reasons="bad_credentials=999,throttled=1"`,
		"untracked addresses\" count=5"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	r.flush(log)
	if buf.Len() != 0 {
		t.Fatalf("an empty period logged:\n%s", buf.String())
	}
}

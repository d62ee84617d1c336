package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/topics"
)

// auditLine is a decoded audit line.
type auditLine struct {
	TS, Type, UID, DID, IP, By, Reason, Target, Prev string
	OK                                               bool
	N                                                int
}

// readAudit verifies the chain in dir and returns its lines.
func readAudit(t *testing.T, dir string) []auditLine {
	t.Helper()
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(files, true); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	var out []auditLine
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ln := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
			var l auditLine
			if err := json.Unmarshal(ln, &l); err != nil {
				t.Fatalf("%s: %v", ln, err)
			}
			out = append(out, l)
		}
	}
	return out
}

func find(ls []auditLine, match func(auditLine) bool) (auditLine, bool) {
	for _, l := range ls {
		if match(l) {
			return l, true
		}
	}
	return auditLine{}, false
}

// TestAuditTrail: a real broker writes login outcomes (success, wrong
// password, lockout), admin API changes (user created, token created and
// revoked, kick) and aggregated ACL denials into {data}/audit; after a
// restart on the same data dir the chain goes on from the last line.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	cfg.Auth.MaxFailures = 2
	cfg.Auth.Lockout = time.Hour
	cfg.Auth.MaxLockout = time.Hour
	b := brokertest.StartConfig(t, cfg)
	ctx := context.Background()
	api := adminapi.NewClient(b.HTTPURL(), b.AdminToken())
	if err := api.AddUser(ctx, "alice", pw, false); err != nil {
		t.Fatal(err)
	}
	tok, err := api.CreateToken(ctx, "alice", "p1")
	if err != nil {
		t.Fatal(err)
	}
	c := b.Dial("alice", "p1", tok.Secret)
	// A subscription the ACL refuses, three times: one aggregated line.
	for range 3 {
		if code := brokertest.Subscribe(t, c, topics.DeviceFilter("bob", "p1"), 1, nil); code != 0x80 {
			t.Fatalf("subscribe to bob's tree granted %#x", code)
		}
	}
	if n, err := api.Kick(ctx, "alice.p1"); err != nil || n != 1 {
		t.Fatalf("kick = %d, %v", n, err)
	}
	for range 3 {
		if err := b.TryConnect(b.ClientOptions("alice.p2", "alice", "wrong-horse")); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if _, err := api.RevokeTokens(ctx, "alice", "p1", ""); err != nil {
		t.Fatal(err)
	}
	dir := b.AuditDir()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ls := readAudit(t, dir)
	checks := []struct {
		what string
		ok   func(auditLine) bool
	}{
		{"user.create by the admin API", func(l auditLine) bool {
			return l.Type == audit.UserCreate && l.UID == "alice" && l.OK && l.By == "admin-api" && l.IP == "127.0.0.1"
		}},
		{"token.create with the token id", func(l auditLine) bool {
			return l.Type == audit.TokenCreate && l.UID == "alice" && l.Target == tok.ID && l.OK
		}},
		{"a token login", func(l auditLine) bool {
			return l.Type == audit.AuthLogin && l.UID == "alice" && l.DID == "p1" && l.OK && l.Reason == "token" && l.IP == "127.0.0.1"
		}},
		{"a wrong password", func(l auditLine) bool {
			return l.Type == audit.AuthLogin && l.UID == "alice" && l.DID == "p2" && !l.OK && l.Reason == "bad_credentials"
		}},
		{"the lockout it started", func(l auditLine) bool {
			return l.Type == audit.AuthLockout && l.UID == "alice" && l.Target == "user-address"
		}},
		{"a refusal while locked out", func(l auditLine) bool {
			return l.Type == audit.AuthLogin && !l.OK && l.Reason == "throttled"
		}},
		{"the kick", func(l auditLine) bool { return l.Type == audit.AdminKick && l.UID == "alice" && l.DID == "p1" }},
		{"acl.deny aggregated", func(l auditLine) bool {
			return l.Type == audit.ACLDeny && l.UID == "alice" && l.DID == "p1" && l.Target == topics.DeviceFilter("bob", "p1") && l.N == 3 && l.Reason == "subscribe"
		}},
		{"token.revoke", func(l auditLine) bool {
			return l.Type == audit.TokenRevoke && l.UID == "alice" && l.DID == "p1" && l.OK
		}},
	}
	for _, c := range checks {
		if _, ok := find(ls, c.ok); !ok {
			t.Errorf("no audit line for %s in %+v", c.what, ls)
		}
	}

	// Restart on the same data dir: the chain goes on.
	cfg2 := *cfg
	b2 := brokertest.StartConfig(t, &cfg2)
	// Lockouts live in memory: the right password logs in again.
	if err := b2.TryConnect(b2.ClientOptions("alice.p3", "alice", pw)); err != nil {
		t.Fatalf("password login after restart: %v", err)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	ls2 := readAudit(t, dir) // verifies the whole chain across both runs
	if len(ls2) <= len(ls) {
		t.Fatalf("%d lines after the restart, %d before", len(ls2), len(ls))
	}
	if _, ok := find(ls2[len(ls):], func(l auditLine) bool {
		return l.Type == audit.AuthLogin && l.DID == "p3" && l.OK && l.Reason == "password"
	}); !ok {
		t.Errorf("no password login after the restart in %+v", ls2[len(ls):])
	}
}

// TestAuditDisabled: audit.enabled false writes no audit directory.
func TestAuditDisabled(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.Audit.Enabled = false })
	b.AddUser("alice", pw)
	b.Dial("alice", "p1", pw)
	if b.AuditDir() != "" {
		t.Fatalf("AuditDir = %q", b.AuditDir())
	}
	if _, err := os.Stat(b.Config.Data + "/audit"); !os.IsNotExist(err) {
		t.Fatalf("audit dir exists: %v", err)
	}
}

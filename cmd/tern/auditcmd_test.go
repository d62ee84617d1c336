package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tern-im/tern/internal/audit"
)

// TestAuditVerifyCLI: user and token commands on a stopped broker's data
// dir are audited (by "cli:…"); `tern audit verify` says OK for the data
// dir's chain and, for an edited copy, names the file and line where the
// chain breaks and fails.
func TestAuditVerifyCLI(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cheap := writeConfig(t, "auth: {argon2_time: 1, argon2_memory: 1MiB}\n")
	for _, args := range [][]string{
		{"user", "add", "alice", "--password", "s3cret-pass", "--data", dir, "-c", cheap},
		{"user", "add", "bob", "--password", "s3cret-pass", "--data", dir, "-c", cheap},
		{"token", "create", "alice", "p1", "--data", dir},
		{"user", "disable", "bob", "--data", dir},
	} {
		if _, stderr, err := tern(t, "", args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	out, _, err := tern(t, "", "audit", "verify", "--data", dir)
	if err != nil || !strings.HasPrefix(out, "OK 4 lines in 1 files") {
		t.Fatalf("audit verify = %q, %v", out, err)
	}
	files, err := audit.Files(filepath.Join(dir, "audit"))
	if err != nil || len(files) != 1 {
		t.Fatalf("files %v %v", files, err)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"type":"user.disable","uid":"bob","by":"cli:`)) {
		t.Errorf("no user.disable by the CLI in\n%s", raw)
	}
	// An edited copy: bob was "enabled" instead.
	bad := filepath.Join(t.TempDir(), "copy.jsonl")
	if err := os.WriteFile(bad, bytes.Replace(raw, []byte(`"uid":"bob","by"`), []byte(`"uid":"eve","by"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = tern(t, "", "audit", "verify", bad)
	if !errors.Is(err, errChainBroken) || !strings.Contains(out, "BROKEN "+bad+":3:") {
		t.Fatalf("tampered copy: %q, %v", out, err)
	}
	// The untouched file given by name verifies too.
	if out, _, err = tern(t, "", "audit", "verify", files[0]); err != nil || !strings.HasPrefix(out, "OK 4 lines") {
		t.Fatalf("verify FILE = %q, %v", out, err)
	}
	if _, _, err := tern(t, "", "audit", "check"); err == nil {
		t.Error("audit check accepted")
	}
}

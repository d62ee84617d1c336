package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/compliance"
	"github.com/tern-im/tern/internal/store"
	"github.com/tern-im/tern/topics"
)

// TestComplianceCommands: tern hold, retention and export against a
// running broker (--server) and then on its stopped data dir (--data):
// a hold placed over the API is listed and lifted offline; the export's
// manifest verifies, and running it again gives the same bytes; bad
// arguments are refused with a clear error; everything is audited and
// the audit chain verifies.
func TestComplianceCommands(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	c := b.Dial("alice", "p1", pw)
	for i := range 3 {
		brokertest.Wait(t, c.Publish(topics.Up("alice", "p1", topics.UpMsg), 1, false,
			fmt.Sprintf(`{"to":"bob","cmid":"c%d","b":"message %d"}`, i, i)), "send")
	}
	cfg := writeConfig(t, "admin_token: "+b.Config.AdminToken+"\n")
	srv := func(args ...string) (string, string, error) {
		return tern(t, "", append(args, "--server", b.HTTPURL(), "-c", cfg)...)
	}
	out, _, err := srv("hold", "add", "--cv", "d:alice:bob", "--reason", "case 1")
	id := strings.TrimSpace(out)
	if err != nil || len(id) != 26 {
		t.Fatalf("hold add: %q %v", out, err)
	}
	if out, _, err = srv("hold", "list"); err != nil || !strings.Contains(out, id) || !strings.Contains(out, "case 1") || !strings.Contains(out, "admin-api") {
		t.Fatalf("hold list: %q %v", out, err)
	}
	if out, _, err = srv("retention", "set", "d:alice:bob", "30d"); err != nil || !strings.Contains(out, "720h0m0s") {
		t.Fatalf("retention set: %q %v", out, err)
	}
	if out, _, err = srv("retention", "get", "d:alice:bob"); err != nil || !strings.Contains(out, "720h0m0s") {
		t.Fatalf("retention get: %q %v", out, err)
	}
	if out, _, err = srv("retention", "get", "g:none"); err != nil || !strings.Contains(out, "server default") {
		t.Fatalf("retention get default: %q %v", out, err)
	}
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote.jsonl")
	if _, stderr, err := srv("export", "--cv", "d:alice:bob", "--out", remote); err != nil || !strings.Contains(stderr, "exported 3 events") {
		t.Fatalf("export: %q %v", stderr, err)
	}
	stdout, _, err := srv("export", "--user", "bob", "--since", "2000-01-01")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := compliance.VerifyExport(strings.NewReader(stdout)); err != nil || m.Count != 3 {
		t.Fatalf("export to stdout: %+v %v\n%s", m, err, stdout)
	}
	for _, args := range [][]string{
		{"retention", "set", "alice", "1h"},
		{"retention", "set", "d:bob:alice", "1h"},
		{"retention", "set", "g:ops", "10s"},
		{"retention", "set", "g:ops", "forever"},
		{"retention", "get"},
		{"hold", "add"},
		{"hold", "add", "--user", "alice", "--cv", "g:ops"},
		{"hold", "add", "--user", "Alice!"},
		{"hold", "add", "--cv", "g:ops", "--reason", strings.Repeat("x", 1025)},
		{"hold", "remove", "not-a-ulid"},
		{"hold", "remove", "01M8EB8TNAG20YCP61RCGW5ZCF"},
		{"hold", "list", "--user", "alice"},
		{"export", "--since", "yesterday"},
		{"export", "--since", "2026-02-01", "--until", "2026-01-01"},
		{"export", "--cv", "bob"},
		{"export", "extra"},
	} {
		if _, _, err := srv(args...); err == nil {
			t.Errorf("%v: accepted", args)
		} else if !strings.Contains(err.Error(), "want") && !strings.Contains(err.Error(), "must") &&
			!strings.Contains(err.Error(), "no such hold") && !strings.Contains(err.Error(), "bad") &&
			!strings.Contains(err.Error(), "no file storage") && !strings.Contains(err.Error(), "time") &&
			!strings.Contains(err.Error(), "before") && !strings.Contains(err.Error(), "takes flags") &&
			!strings.Contains(err.Error(), "exactly one") && !strings.Contains(err.Error(), "go with add") &&
			!strings.Contains(err.Error(), "cv must") {
			t.Errorf("%v: unclear error %v", args, err)
		}
	}

	// Offline, on the stopped broker's data dir.
	data := b.Config.Data
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	off := func(args ...string) (string, string, error) { return tern(t, "", append(args, "--data", data)...) }
	if out, _, err = off("hold", "list"); err != nil || !strings.Contains(out, id) {
		t.Fatalf("offline hold list: %q %v", out, err)
	}
	if _, _, err = off("hold", "remove", id); err != nil {
		t.Fatalf("offline hold remove: %v", err)
	}
	if out, _, err = off("hold", "list"); err != nil || strings.Contains(out, id) {
		t.Fatalf("hold still listed: %q %v", out, err)
	}
	local := filepath.Join(dir, "local.jsonl")
	for range 2 { // re-runnable: the second run replaces the first
		if _, _, err := off("export", "--cv", "d:alice:bob", "--out", local); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.ReadFile(remote)
	bb, _ := os.ReadFile(local)
	if len(a) == 0 || string(a) != string(bb) {
		t.Errorf("the offline export differs from the online one:\n%s\n%s", a, bb)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*partial*")); len(left) > 0 {
		t.Errorf("partial files left: %v", left)
	}
	if out, _, err = off("audit", "verify"); err != nil || !strings.HasPrefix(out, "OK") {
		t.Fatalf("audit verify: %q %v", out, err)
	}
	raw, err := os.ReadFile(filepath.Join(data, "audit", "audit-00000001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"type":"hold.add","ip":"127.0.0.1","by":"admin-api","ok":true`,
		`"type":"retention.set","ip":"127.0.0.1","by":"admin-api","ok":true,"reason":"720h0m0s","target":"d:alice:bob"`,
		`"type":"export","ip":"127.0.0.1","by":"admin-api","ok":true,"reason":"count=3 sha256=`,
		`"type":"hold.remove","by":"cli:`,
		`"type":"export","by":"cli:`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("audit lacks %s", want)
		}
	}
}

// TestUserTOTPCommand: tern user totp enable prints the otpauth:// URI, a
// QR code in block characters and ten recovery codes; the password then
// fails as a device password; disable restores it; both are audited.
func TestUserTOTPCommand(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cheap := writeConfig(t, "auth: {argon2_time: 1, argon2_memory: 1MiB}\n")
	if _, _, err := tern(t, "", "user", "add", "alice", "--password", "s3cret-pass", "--data", dir, "-c", cheap); err != nil {
		t.Fatal(err)
	}
	out, _, err := tern(t, "", "user", "totp", "enable", "alice", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	codes := regexp.MustCompile(`(?m)^  [a-z2-7]{5}-[a-z2-7]{5}$`).FindAllString(out, -1)
	if !strings.Contains(out, "otpauth://totp/Tern:alice?") || !strings.Contains(out, "▀") || len(codes) != 10 {
		t.Fatalf("enable printed:\n%s", out)
	}
	if _, _, err := tern(t, "", "user", "totp", "enable", "alice", "--data", dir); err == nil || !strings.Contains(err.Error(), "already on") {
		t.Fatalf("enable twice: %v", err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts.New(st, accounts.Params{Time: 1, Memory: 1 << 10, Threads: 1}, 1)
	if _, err := acc.Authenticate("alice", "p1", "s3cret-pass"); !errors.Is(err, accounts.ErrOTPRequired) {
		t.Errorf("password after enable: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tern(t, "", "user", "totp", "disable", "alice", "--data", dir); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"user", "totp", "enable"}, {"user", "totp", "on", "alice"}, {"user", "totp", "disable", "alice", "bob"}} {
		if _, _, err := tern(t, "", append(args, "--data", dir)...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "audit", "audit-00000001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), `"type":"user.totp"`); n != 3 {
		t.Errorf("%d user.totp lines, want 3 (enable, refused enable, disable)", n)
	}
}

// TestExportFiles: tern export --files FILE.tar writes the files the
// exported messages attach (files/{fid}, then files.jsonl), over the admin
// API and on a stopped data dir, the same bytes both ways.
func TestExportFiles(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	content := []byte("minutes of the meeting, version 3\n")
	f, err := b.Files().CreateUpload("alice", int64(len(content)), "minutes.txt", "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Files().Append("alice", f.FID, 0, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Files().FinishUpload("alice", f.FID); err != nil {
		t.Fatal(err)
	}
	c := b.Dial("alice", "p1", pw)
	brokertest.Wait(t, c.Publish(topics.Up("alice", "p1", topics.UpMsg), 1, false,
		`{"to":"bob","cmid":"1","b":"see attached","att":[{"fid":"`+f.FID+`"}]}`), "send")
	cfg := writeConfig(t, "admin_token: "+b.Config.AdminToken+"\n")
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote.tar")
	if _, stderr, err := tern(t, "", "export", "--cv", "d:alice:bob", "--out", filepath.Join(dir, "r.jsonl"), "--files", remote,
		"--server", b.HTTPURL(), "-c", cfg); err != nil {
		t.Fatalf("export --files: %v %s", err, stderr)
	}
	files := readTar(t, remote)
	if string(files["files/"+f.FID]) != string(content) {
		t.Errorf("the tar has %q for the file", files["files/"+f.FID])
	}
	var e compliance.FileEntry
	if err := json.Unmarshal(bytes.TrimSpace(files["files.jsonl"]), &e); err != nil || e.FID != f.FID || e.Name != "minutes.txt" || e.Size != int64(len(content)) || e.Missing {
		t.Errorf("files.jsonl: %s %v", files["files.jsonl"], err)
	}
	data := b.Config.Data
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "local.tar")
	if _, _, err := tern(t, "", "export", "--cv", "d:alice:bob", "--out", filepath.Join(dir, "l.jsonl"), "--files", local, "--data", data); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(remote)
	l, _ := os.ReadFile(local)
	if !bytes.Equal(a, l) {
		t.Error("the offline tar differs from the online one")
	}
}

func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(fh)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

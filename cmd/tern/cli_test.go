package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/buildinfo"
	"github.com/tern-im/tern/internal/store"
)

// TestHelpExitsZero: --help and -h on every command print usage and
// succeed (it was "flag: help requested", exit 1).
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"serve", "user", "token", "admin"} {
		for _, h := range []string{"-h", "--help"} {
			_, stderr, err := tern(t, "", cmd, h)
			if err != nil {
				t.Errorf("tern %s %s: %v", cmd, h, err)
			}
			if !strings.Contains(stderr, "Usage of "+cmd) {
				t.Errorf("tern %s %s: no usage in %q", cmd, h, stderr)
			}
		}
	}
	for _, h := range []string{"-h", "--help", "help"} {
		out, _, err := tern(t, "", h)
		if err != nil {
			t.Errorf("tern %s: %v", h, err)
		}
		for _, want := range []string{"--log-level", "--log-format", "--server", "--data", "tern version"} {
			if !strings.Contains(out, want) {
				t.Errorf("tern %s: usage lacks %s", h, want)
			}
		}
	}
	// The real process exits 0.
	cmd := exec.Command(os.Args[0], "serve", "--help")
	cmd.Env = append(os.Environ(), "TERN_TEST_MAIN=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("tern serve --help: %v\n%s", err, out)
	}
}

// TestVersion: tern --version and tern version print version, commit and
// Go version (it was "unknown command").
func TestVersion(t *testing.T) {
	t.Parallel()
	want := buildinfo.Read().String()
	for _, arg := range []string{"version", "--version", "-version"} {
		out, _, err := tern(t, "", arg)
		if err != nil {
			t.Fatalf("tern %s: %v", arg, err)
		}
		if strings.TrimSpace(out) != want {
			t.Errorf("tern %s = %q, want %q", arg, out, want)
		}
		if !strings.Contains(out, buildinfo.Version) || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "commit ") {
			t.Errorf("tern %s = %q: want version, commit and Go version", arg, out)
		}
	}
}

// fakeTerminal answers ReadPassword from a list.
type fakeTerminal struct{ lines []string }

func (f *fakeTerminal) ReadPassword() ([]byte, error) {
	if len(f.lines) == 0 {
		return nil, errors.New("no more input")
	}
	l := f.lines[0]
	f.lines = f.lines[1:]
	return []byte(l), nil
}

// TestPasswordPrompt: at a terminal, user add and passwd without
// --password* ask twice without echo and refuse a mismatch; without a
// terminal they read one line of stdin.
func TestPasswordPrompt(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cheap := writeConfig(t, "auth: {argon2_time: 1, argon2_memory: 1MiB}\n")
	runUser := func(term terminal, stdin string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		c := &userCommand{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, term: term}
		if err := c.Parse(append(args, "--data", dir, "-c", cheap)); err != nil {
			return errb.String(), err
		}
		err := c.Run(t.Context())
		return errb.String(), err
	}
	prompts, err := runUser(&fakeTerminal{lines: []string{"first-pass-1", "first-pass-1"}}, "", "add", "alice")
	if err != nil {
		t.Fatalf("add with matching prompts: %v", err)
	}
	if !strings.Contains(prompts, "Password: ") || !strings.Contains(prompts, "Reenter password: ") {
		t.Errorf("prompts = %q", prompts)
	}
	if _, err := runUser(&fakeTerminal{lines: []string{"new-pass-11", "new-pass-12"}}, "", "passwd", "alice"); err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("passwd with mismatch: %v", err)
	}
	// Not a terminal: one line of stdin, no flag needed.
	if _, err := runUser(nil, "piped-pass-1\n", "passwd", "alice"); err != nil {
		t.Fatalf("passwd from a pipe: %v", err)
	}
	if _, err := runUser(nil, "bob-pass-123\n", "add", "bob"); err != nil {
		t.Fatalf("add from a pipe: %v", err)
	}
	// The mismatch changed nothing and the piped password took.
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acc := accounts.New(st, accounts.Params{Time: 1, Memory: 1 << 10, Threads: 1}, 1)
	if _, err := acc.Authenticate("alice", "p1", "piped-pass-1"); err != nil {
		t.Errorf("alice with the piped password: %v", err)
	}
}

// TestServeDataDirInUse: a second serve on a held data dir says so in
// plain words (it showed Badger's lock message).
func TestServeDataDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, _, err = tern(t, "", "serve", "--data", dir, "--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--http-addr", "")
	want := "data dir " + dir + " is in use by another tern process"
	if err == nil || err.Error() != want {
		t.Fatalf("serve: %v, want %q", err, want)
	}
	if _, _, err := tern(t, "", "user", "list", "--data", dir); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("user list: %v", err)
	}
}

// TestLogFormatJSON: log_format json gives one JSON object a line.
func TestLogFormatJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, _ := newLogger(&buf, "info", "json")
	log.Info("hello", "client", "alice.p1")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", buf.String(), err)
	}
	if m["msg"] != "hello" || m["client"] != "alice.p1" || m["level"] != "INFO" {
		t.Errorf("record = %v", m)
	}
	if _, _, err := tern(t, "", "serve", "--log-format", "xml", "--data", t.TempDir()); err == nil || !strings.Contains(err.Error(), "log_format") {
		t.Errorf("bad --log-format: %v", err)
	}
}

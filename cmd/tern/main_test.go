package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/searchproc"
)

// TestMain lets the test binary act as the tern command in subprocess
// tests (TERN_TEST_MAIN=1), so they run the real main without a build.
func TestMain(m *testing.M) {
	// A broker in these tests starts its search worker (search.process)
	// from this binary, too.
	if os.Getenv("TERN_TEST_MAIN") == "1" || searchproc.IsWorker() {
		main()
		return
	}
	os.Exit(m.Run())
}

// tern runs the command in-process and returns stdout, stderr and error.
func tern(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestUserAndTokenOffline(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cheap := writeConfig(t, "auth: {argon2_time: 1, argon2_memory: 1MiB}\n")

	if _, _, err := tern(t, "s3cret-pass\n", "user", "add", "alice", "--password-stdin", "--data", dir, "-c", cheap); err != nil {
		t.Fatalf("user add: %v", err)
	}
	// Flags before the positionals work too.
	if _, _, err := tern(t, "", "user", "--data", dir, "-c", cheap, "--password", "other-pass-1", "add", "bob"); err != nil {
		t.Fatalf("user add (flags first): %v", err)
	}
	out, _, err := tern(t, "", "token", "create", "alice", "p1", "--data", dir)
	if err != nil || !regexp.MustCompile(`^tt_[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Fatalf("token create: %q %v", out, err)
	}
	out, _, err = tern(t, "", "user", "list", "--data", dir)
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Fatalf("user list: %q %v", out, err)
	}
	if _, _, err := tern(t, "", "user", "disable", "bob", "--data", dir); err != nil {
		t.Fatal(err)
	}
	out, _, _ = tern(t, "", "user", "list", "--data", dir)
	if !regexp.MustCompile(`bob\s+user\s+disabled`).MatchString(out) {
		t.Fatalf("bob not disabled: %q", out)
	}
	out, _, err = tern(t, "", "token", "list", "alice", "--data", dir)
	if err != nil || !strings.Contains(out, "p1") {
		t.Fatalf("token list: %q %v", out, err)
	}
	if _, _, err := tern(t, "", "token", "revoke", "alice", "p1", "--data", dir); err != nil {
		t.Fatalf("token revoke: %v", err)
	}
	if _, _, err := tern(t, "", "user", "del", "bob", "--data", dir); err != nil {
		t.Fatalf("user del: %v", err)
	}

	// Every failure is an error with a clear message.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "add", "carol", "--data", dir}, "--password-stdin"},
		{[]string{"user", "add", "Carol!", "--password", "long-enough", "--data", dir}, "Carol!"},
		{[]string{"user", "add", "alice", "--password", "long-enough", "--data", dir}, "exists"},
		{[]string{"user", "del", "nobody", "--data", dir}, "unknown user"},
		{[]string{"user", "frobnicate", "x"}, "unknown verb"},
		{[]string{"token", "create", "alice"}, "want UID DID"},
		{[]string{"token", "create", "alice", "P/1", "--data", dir}, "P/1"},
		{[]string{"token", "revoke", "alice", "p1", "--data", dir}, "no matching token"},
		{[]string{"user", "list", "--data", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"bogus"}, "unknown command"},
	} {
		_, _, err := tern(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tern %v: err = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}

func TestUserOnlineViaServer(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	cfg := writeConfig(t, "admin_token: "+b.AdminToken()+"\n")
	url := b.HTTPURL()
	if _, _, err := tern(t, "pass-word-1\n", "user", "add", "dave", "--password-stdin", "--server", url, "-c", cfg); err != nil {
		t.Fatalf("user add --server: %v", err)
	}
	out, _, err := tern(t, "", "token", "create", "dave", "k1", "--server", url, "-c", cfg)
	if err != nil {
		t.Fatalf("token create --server: %v", err)
	}
	b.Dial("dave", "k1", strings.TrimSpace(out))
	bad := writeConfig(t, "admin_token: wrong\n")
	if _, _, err := tern(t, "", "user", "list", "--server", url, "-c", bad); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong admin token: %v", err)
	}
}

func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	bad := writeFile(t, "mqtt: {adress: x}\n")
	if _, _, err := tern(t, "", "serve", "-c", bad); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Fatalf("unknown key: %v", err)
	}
	inv := writeFile(t, "limits: {receive_maximum: 0}\n")
	if _, _, err := tern(t, "", "serve", "-c", inv); err == nil || !strings.Contains(err.Error(), "limits.receive_maximum") {
		t.Fatalf("invalid value: %v", err)
	}
	if _, _, err := tern(t, "", "serve", "-c", "/nonexistent.yaml"); err == nil {
		t.Fatal("missing config file accepted")
	}
}

// TestServeGracefulShutdown runs `tern serve` as a real process, connects
// a client, sends SIGTERM and expects a clean exit with the store closed
// (the data dir opens again offline).
func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cheap := writeConfig(t, "auth: {argon2_time: 1, argon2_memory: 1MiB}\n")
	if _, _, err := tern(t, "", "user", "add", "alice", "--password", pw, "--data", dir, "-c", cheap); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "serve", "--data", dir, "--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--http-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "TERN_TEST_MAIN=1")
	stderr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// Read the log for the bound address; drain the rest so the process
	// never blocks on logging.
	addrc := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stderr)
		started := regexp.MustCompile(`tern started.* mqtt=(\S+)`)
		for lines.Scan() {
			if m := started.FindStringSubmatch(lines.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(15 * time.Second):
		t.Fatal("no start line in 15 s")
	}
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("alice.p1").
		SetUsername("alice").SetPassword(pw).SetAutoReconnect(false)
	c := paho.NewClient(o)
	brokertest.Wait(t, c.Connect(), "connect")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15 s after SIGTERM")
	}
	if _, _, err := tern(t, "", "user", "list", "--data", dir); err != nil {
		t.Fatalf("store not closed cleanly: %v", err)
	}
}

const pw = "pass-word-1"

func writeFile(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tern.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeConfig writes a config file that must load.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := writeFile(t, yaml)
	if _, err := config.Load(p); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return p
}

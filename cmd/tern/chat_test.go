package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/client"
)

// chatProc is `tern chat` running as a real process (this test binary as
// the tern command), driven through its stdin and read through its
// stdout.
type chatProc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	mu    sync.Mutex
	seen  []string // the transcript, for failure messages
}

func startChat(t *testing.T, addr, uid, did, secret string) *chatProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "chat", "--mqtt", addr, "--user", uid, "--device", did)
	cmd.Env = append(os.Environ(), "TERN_TEST_MAIN=1", "TERN_TOKEN="+secret)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &chatProc{t: t, name: uid, cmd: cmd, in: in, lines: make(chan string, 1000)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s's stderr:\n%s", uid, stderr.String())
		}
	})
	return p
}

// expect waits for a stdout line containing want and returns it.
func (p *chatProc) expect(want string) string {
	p.t.Helper()
	deadline := time.After(brokertest.Timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s: output ended without %q; transcript:\n%s", p.name, want, p.transcript())
			}
			p.mu.Lock()
			p.seen = append(p.seen, l)
			p.mu.Unlock()
			if strings.Contains(l, want) {
				return l
			}
		case <-deadline:
			p.t.Fatalf("%s: no %q; transcript:\n%s", p.name, want, p.transcript())
		}
	}
}

func (p *chatProc) transcript() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.seen, "\n")
}

func (p *chatProc) say(line string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.in, line); err != nil {
		p.t.Fatalf("%s: write %q: %v", p.name, line, err)
	}
}

// exits closes stdin (or sends /quit) and waits for exit status 0.
func (p *chatProc) exits() {
	p.t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			p.t.Fatalf("%s: exit: %v; transcript:\n%s", p.name, err, p.transcript())
		}
	case <-time.After(brokertest.Timeout):
		p.t.Fatalf("%s: still running; transcript:\n%s", p.name, p.transcript())
	}
}

// TestChatTwoTerminals drives two `tern chat` processes through stdin and
// stdout against a real broker: each sees the other's message, the sender
// sees the read receipt, /history shows both messages, /who and /list
// answer, and /quit (or the end of input) exits 0.
func TestChatTwoTerminals(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	addr := b.Addr(broker.ListenerMQTT)
	bobToken := b.Token("bob", "term")

	alice := startChat(t, addr, "alice", "laptop", pw)
	bob := startChat(t, addr, "bob", "term", bobToken)
	alice.expect("* online as alice.laptop")
	alice.expect("no conversations yet")
	bob.expect("* online as bob.term")

	alice.say("hello before picking a conversation")
	alice.expect("! no conversation")
	alice.say("/dm bob")
	alice.expect("* now in d:alice:bob")
	alice.say("hello bob")
	alice.expect("[d:alice:bob] alice: hello bob") // the echo: stored
	bob.expect("[d:alice:bob] alice: hello bob")
	alice.expect("[d:alice:bob] bob read up to #1")

	// Before any /dm or /g, the first message received picks the
	// conversation.
	bob.expect("* now in d:alice:bob (plain lines answer there)")
	bob.say("hi alice")
	alice.expect("[d:alice:bob] bob: hi alice")

	alice.say("/history")
	alice.expect("--- history of d:alice:bob ---")
	alice.expect("[d:alice:bob] #1 alice: hello bob")
	alice.expect("[d:alice:bob] #2 bob: hi alice")
	alice.expect("--- end of history ---")
	alice.say("/who")
	alice.expect("* in d:alice:bob:")
	alice.say("/list")
	alice.expect("[d:alice:bob] ")
	alice.say("/frobnicate")
	alice.expect("! unknown command /frobnicate")

	// A line sent just before the end of input is still delivered.
	bob.say("bye")
	bob.in.Close()
	alice.expect("[d:alice:bob] bob: bye")
	bob.exits()
	alice.say("/quit")
	alice.exits()
}

func TestChatRefusals(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	addr := b.Addr(broker.ListenerMQTT)
	// No TERN_TOKEN and no terminal: a clear error, not a hang.
	c := &chatCommand{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		lookupEnv: func(string) (string, bool) { return "", false }}
	if err := c.Parse([]string{"--mqtt", addr, "--user", "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "TERN_TOKEN") {
		t.Fatalf("no secret: %v", err)
	}
	// A wrong password ends the command with the refusal.
	c = &chatCommand{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		lookupEnv: func(string) (string, bool) { return "wrong-password", true }}
	if err := c.Parse([]string{"--mqtt", addr, "--user", "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("wrong password: %v", err)
	}
	for _, args := range [][]string{{}, {"--user", "Alice!"}, {"--user", "alice", "--device", "a/b"}, {"--user", "alice", "extra"}} {
		c := &chatCommand{stderr: io.Discard}
		if err := c.Parse(args); err == nil {
			t.Errorf("chat %v accepted", args)
		}
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"hi":                 "hi",
		"a\nb":               "a⏎b",
		"\x1b[31mred\x1b[0m": "[31mred[0m",
		"tab\there\r":        "tab here",
		"ünïcode 👍":          "ünïcode 👍",
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzChatLine feeds arbitrary input lines to the chat command of an
// offline client: an answer line, never a panic, and nothing sent
// anywhere but the outbox.
func FuzzChatLine(f *testing.F) {
	for _, s := range []string{"hi", "/dm bob", "/g ops", "/history 5", "/history x", "/who", "/list", "/help", "/quit", "/dm", "/g a/b", "/dm Alice!", "/"} {
		f.Add(s)
	}
	cl, err := client.New(client.Options{Addr: "127.0.0.1:1", UID: "alice", DID: "term", RPCTimeout: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var out strings.Builder
		c := &chatCommand{uid: "alice", did: "term", c: cl, out: &lineWriter{w: &out}, read: map[string]uint64{}}
		line = strings.TrimSpace(line)
		quit := c.command(t.Context(), line)
		if quit != (line == "/quit" || line == "/exit") {
			t.Fatalf("%q: quit = %v", line, quit)
		}
		if line != "" && !quit && out.Len() == 0 {
			t.Fatalf("%q: no answer", line)
		}
		if cl.Outbox() != 0 {
			t.Fatalf("%q: sent without a conversation", line)
		}
	})
}

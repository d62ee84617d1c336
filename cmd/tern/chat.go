package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/tern-im/tern/client"
	"github.com/tern-im/tern/topics"
)

const chatHelp = `plain lines go to the current conversation: the one picked last,
or, before any pick, the one of the first message received.
commands:
  /dm UID        talk to UID (plain lines are sent there)
  /g GID         talk in group GID
  /list          conversations with unread counts
  /history [N]   the last N messages here (default 20)
  /who           who is here, and their presence
  /quit          leave (also at end of input)
  /help          this
`

// chatCommand is `tern chat`: a line-oriented terminal client for people
// (PROTOCOL §14), built on the client package. Events are printed as
// lines ("[d:alice:bob] alice: hi"); it works the same when stdin is not
// a terminal.
type chatCommand struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)

	addr, uid, did string
	cbor           bool

	out  *lineWriter
	c    *client.Client
	mu   sync.Mutex
	cur  string            // the current conversation
	read map[string]uint64 // read marker sent, per cv
}

func (c *chatCommand) Parse(args []string) error {
	fs := newFlagSet("chat", c.stderr)
	fs.StringVar(&c.addr, "mqtt", "127.0.0.1:1883", "broker's MQTT `HOST:PORT`")
	fs.StringVar(&c.uid, "user", "", "your user `UID`")
	fs.StringVar(&c.did, "device", "term", "this device's `DID` (a device token is bound to it)")
	fs.BoolVar(&c.cbor, "cbor", false, "use CBOR on the device's topics")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("chat: unexpected argument %q", pos[0])
	}
	if c.uid == "" {
		return errors.New("chat: --user UID is required")
	}
	if err := topics.CheckUID(c.uid); err != nil {
		return fmt.Errorf("chat: --user: %w", err)
	}
	if err := topics.CheckDID(c.did); err != nil {
		return fmt.Errorf("chat: --device: %w", err)
	}
	return nil
}

// secret is the password or device token: TERN_TOKEN, else a no-echo
// prompt on the terminal.
func (c *chatCommand) secret() (string, error) {
	if s, ok := c.lookupEnv("TERN_TOKEN"); ok && s != "" {
		return s, nil
	}
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("chat: no terminal to ask for the password: set TERN_TOKEN to the password or a device token")
	}
	fmt.Fprintf(c.stderr, "Password or device token for %s.%s: ", c.uid, c.did)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("chat: read password: %w", err)
	}
	if len(b) == 0 {
		return "", errors.New("chat: empty password")
	}
	return string(b), nil
}

func (c *chatCommand) Run(ctx context.Context) error {
	secret, err := c.secret()
	if err != nil {
		return err
	}
	c.out = &lineWriter{w: c.stdout}
	c.read = map[string]uint64{}
	online := make(chan struct{}, 1)
	c.c, err = client.New(client.Options{
		Addr: c.addr, UID: c.uid, DID: c.did, Secret: secret, CBOR: c.cbor,
		Typing: true, StartAtHead: true,
		OnEvent: c.onEvent,
		OnOnline: func(time.Duration) {
			select {
			case online <- struct{}{}:
			default:
			}
		},
		OnOffline: func(err error) {
			if err != nil { // nil: the command is ending
				c.out.printf("* connection lost, reconnecting")
			}
		},
	})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- c.c.Run(cctx) }()
	c.out.printf("* connecting to %s as %s.%s", c.addr, c.uid, c.did)
	select {
	case <-online:
	case err := <-runErr:
		return fmt.Errorf("chat: %w", err)
	case <-ctx.Done():
		return nil
	}
	c.out.printf("* online as %s.%s; /dm UID or /g GID picks a conversation, /help lists commands", c.uid, c.did)
	c.list(ctx)

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(c.stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-cctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-runErr:
			return fmt.Errorf("chat: %w", err)
		case <-online:
			c.out.printf("* online again")
		case line, ok := <-lines:
			if !ok || c.command(ctx, strings.TrimSpace(line)) {
				return c.quit(stop, runErr)
			}
		}
	}
}

// quit waits a little for unconfirmed messages, then stops the client.
func (c *chatCommand) quit(stop context.CancelFunc, runErr chan error) error {
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Flush(fctx); err != nil {
		c.out.printf("! %d message(s) not confirmed by the server", c.c.Outbox())
	}
	stop()
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("chat: %w", err)
	}
	return nil
}

// command handles one input line; it reports whether to quit.
func (c *chatCommand) command(ctx context.Context, line string) bool {
	if line == "" {
		return false
	}
	if !strings.HasPrefix(line, "/") {
		cv := c.current()
		if cv == "" {
			c.out.printf("! no conversation: /dm UID or /g GID first")
			return false
		}
		c.c.Send(cv, line)
		return false
	}
	verb, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	switch verb {
	case "/quit", "/exit":
		return true
	case "/help":
		c.out.printf("%s", strings.TrimRight(chatHelp, "\n"))
	case "/dm":
		if err := topics.CheckUID(arg); err != nil || arg == c.uid {
			c.out.printf("! /dm wants another user's UID")
			return false
		}
		c.setCurrent(dmCV(c.uid, arg))
	case "/g":
		if err := topics.CheckUID(arg); err != nil {
			c.out.printf("! /g wants a group id")
			return false
		}
		c.setCurrent("g:" + arg)
	case "/list":
		c.list(ctx)
	case "/history":
		n := 20
		if arg != "" {
			v, err := strconv.Atoi(arg)
			if err != nil || v < 1 || v > 200 {
				c.out.printf("! /history wants a count from 1 to 200")
				return false
			}
			n = v
		}
		c.history(ctx, n)
	case "/who":
		c.who(ctx)
	default:
		c.out.printf("! unknown command %s (/help lists them)", verb)
	}
	return false
}

func (c *chatCommand) current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *chatCommand) setCurrent(cv string) {
	c.mu.Lock()
	c.cur = cv
	c.mu.Unlock()
	c.out.printf("* now in %s", cv)
}

// dmCV is the conversation id of a DM: d:{a}:{b} with the uids sorted.
func dmCV(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

// rpcCtx bounds one command's RPCs.
func rpcCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}

type chatEvent struct {
	T    string `json:"t"`
	CV   string `json:"cv"`
	Seq  uint64 `json:"seq"`
	From string `json:"from"`
	B    string `json:"b"`
}

func (c *chatCommand) list(ctx context.Context) {
	var r struct {
		Convs []struct {
			CV     string     `json:"cv"`
			Unread uint64     `json:"unread"`
			Last   *chatEvent `json:"last"`
		} `json:"convs"`
	}
	cctx, cancel := rpcCtx(ctx)
	defer cancel()
	if err := c.c.Call(cctx, "conv.list", nil, &r); err != nil {
		c.out.printf("! conversations: %v", err)
		return
	}
	if len(r.Convs) == 0 {
		c.out.printf("* no conversations yet")
		return
	}
	c.out.printf("* conversations:")
	for _, cv := range r.Convs {
		last := ""
		if cv.Last != nil && cv.Last.T == "msg" {
			last = " — " + cv.Last.From + ": " + oneLine(cv.Last.B)
		}
		c.out.printf("  [%s] %d unread%s", cv.CV, cv.Unread, last)
	}
}

func (c *chatCommand) history(ctx context.Context, n int) {
	cv := c.current()
	if cv == "" {
		c.out.printf("! no conversation: /dm UID or /g GID first")
		return
	}
	var r struct {
		Items []chatEvent `json:"items"`
	}
	cctx, cancel := rpcCtx(ctx)
	defer cancel()
	if err := c.c.Call(cctx, "history", map[string]any{"cv": cv, "max": n}, &r); err != nil {
		c.out.printf("! history: %v", err)
		return
	}
	c.out.printf("--- history of %s ---", cv)
	var last uint64
	for _, e := range r.Items {
		if e.T == "msg" {
			c.out.printf("[%s] #%d %s: %s", cv, e.Seq, e.From, oneLine(e.B))
			if e.From != c.uid {
				last = e.Seq
			}
		}
	}
	c.out.printf("--- end of history ---")
	if last > 0 {
		c.markRead(cv, last)
	}
}

func (c *chatCommand) who(ctx context.Context) {
	cv := c.current()
	if cv == "" {
		c.out.printf("! no conversation: /dm UID or /g GID first")
		return
	}
	cctx, cancel := rpcCtx(ctx)
	defer cancel()
	var uids []string
	if gid, ok := strings.CutPrefix(cv, "g:"); ok {
		var r struct {
			Members []struct {
				UID  string `json:"uid"`
				Role string `json:"role"`
			} `json:"members"`
		}
		if err := c.c.Call(cctx, "group.members", map[string]string{"gid": gid}, &r); err != nil {
			c.out.printf("! who: %v", err)
			return
		}
		for _, m := range r.Members {
			uids = append(uids, m.UID)
		}
	} else {
		uids = strings.Split(strings.TrimPrefix(cv, "d:"), ":")
	}
	var p struct {
		P map[string]struct {
			S  string `json:"s"`
			D  int    `json:"d"`
			LS int64  `json:"ls"`
			TX string `json:"tx"`
		} `json:"p"`
	}
	if err := c.c.Call(cctx, "presence.get", map[string]any{"uids": uids}, &p); err != nil {
		c.out.printf("! who: %v", err)
		return
	}
	c.out.printf("* in %s:", cv)
	for _, u := range uids {
		pr, ok := p.P[u]
		switch {
		case !ok:
			c.out.printf("  %s (presence not shared: not a contact)", u)
		default:
			c.out.printf("  %s %s", u, presenceText(pr.S, pr.D, pr.LS, pr.TX))
		}
	}
}

func presenceText(s string, devices int, lastSeen int64, tx string) string {
	var b strings.Builder
	switch s {
	case "on":
		b.WriteString("online")
	case "off":
		b.WriteString("offline")
		if lastSeen > 0 {
			b.WriteString(", last seen " + time.UnixMilli(lastSeen).Format("2006-01-02 15:04"))
		}
	default:
		b.WriteString(s)
	}
	if devices > 1 {
		fmt.Fprintf(&b, " (%d devices)", devices)
	}
	if tx != "" {
		b.WriteString(" — " + oneLine(tx))
	}
	return b.String()
}

// onEvent prints one event; it runs on the client's goroutine.
func (c *chatCommand) onEvent(e client.Event) {
	switch ev := e.(type) {
	case *client.Message:
		b := oneLine(ev.B)
		if ev.Trunc {
			b += " […]"
		}
		c.out.printf("[%s] %s: %s", ev.CV, ev.From, b)
		if ev.From != c.uid {
			c.markRead(ev.CV, ev.Seq)
			c.mu.Lock()
			pick := c.cur == ""
			if pick {
				c.cur = ev.CV
			}
			c.mu.Unlock()
			if pick {
				c.out.printf("* now in %s (plain lines answer there)", ev.CV)
			}
		}
	case *client.Edit:
		c.out.printf("[%s] %s edited a message: %s", ev.CV, ev.From, oneLine(ev.B))
	case *client.Delete:
		c.out.printf("[%s] %s deleted a message", ev.CV, ev.From)
	case *client.Reaction:
		verb := "reacted"
		if ev.Removed {
			verb = "took back"
		}
		c.out.printf("[%s] %s %s %s", ev.CV, ev.From, verb, ev.K)
	case *client.Mark:
		if ev.From != c.uid && ev.K == "read" {
			c.out.printf("[%s] %s read up to #%d", ev.CV, ev.From, ev.Upto)
		}
	case *client.Member:
		c.out.printf("[%s] %s %s %s", ev.CV, ev.By, memberVerb(ev.Op), strings.Join(ev.Who, ", "))
	case *client.Typing:
		if ev.S == "c" && ev.From != c.uid {
			c.out.printf("[%s] %s is typing…", ev.CV, ev.From)
		}
	case *client.Presence:
		if ev.UID != c.uid {
			c.out.printf("* %s is %s", ev.UID, presenceText(ev.S, ev.D, ev.LS, ev.TX))
		}
	case *client.Error:
		c.out.printf("! refused (%d): %s", ev.Code, ev.Msg)
	case *client.Reset:
		if len(ev.Convs) > 0 {
			c.out.printf("* older events are no longer kept; /history shows what is")
		}
	}
}

func memberVerb(op string) string {
	switch op {
	case "add":
		return "added"
	case "remove":
		return "removed"
	case "leave":
		return "left"
	case "role":
		return "changed the role of"
	}
	return op
}

// markRead tells the server the user read cv up to seq (§6), once per
// advance.
func (c *chatCommand) markRead(cv string, seq uint64) {
	c.mu.Lock()
	if seq <= c.read[cv] {
		c.mu.Unlock()
		return
	}
	c.read[cv] = seq
	c.mu.Unlock()
	if err := c.c.Mark(cv, "read", seq); err != nil {
		c.mu.Lock()
		c.read[cv] = 0 // offline: the next message marks it
		c.mu.Unlock()
	}
}

// oneLine keeps text from the network on one line and drops control
// characters, so that nobody can move the cursor or recolour the
// terminal of the person reading.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return '⏎'
		case r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			return -1
		}
		return r
	}, s)
}

// lineWriter writes whole lines from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", a...)
}

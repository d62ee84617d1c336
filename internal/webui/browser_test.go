package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
)

// step bounds each wait for the page.
const step = 15 * time.Second

// chromium returns the browser to drive. Outside CI a machine without one
// skips the browser tests; in CI (CI set) that is a failure.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is missing: the browser tests must run in CI (apt-get install -y chromium)")
	}
	t.Skip("chromium not installed (apt-get install -y chromium); CI runs these tests")
	return ""
}

// newBrowser starts a headless chromium with a fresh profile and returns
// its context; each person gets their own browser context (own storage).
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 720),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// person opens a new browser context (separate storage) in the browser.
func person(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab, which lives as long as the context of
	// that run: never one with a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// run runs actions with a deadline and fails the test with what.
func run(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression and returns its value.
func eval[T any](t testing.TB, ctx context.Context, what, expr string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// until waits for a JavaScript expression to become truthy.
func until(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[bool]("!!("+expr+")",
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(step))); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// css is a CSS selector for the query actions.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// clickItem clicks an element of a list the page redraws (conversations,
// messages) from inside the page: a node found by the test may be
// replaced before a synthesised mouse click reaches it.
func clickItem(t testing.TB, ctx context.Context, what, sel string) {
	t.Helper()
	until(t, ctx, what, q(sel)+` !== null`)
	eval[any](t, ctx, what, q(sel)+`.click()`)
}

func q(sel string) string { return fmt.Sprintf("document.querySelector(%q)", sel) }

// msgWith is an expression true when a message with this body is shown.
func msgWith(body string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('[data-testid=msg][data-id] [data-testid=msg-body]')].some(e => e.textContent === %q)`, body)
}

// proxy stands between one browser and the broker's HTTP port, so that a
// test can cut the browser's connection and keep it from reconnecting.
type proxy struct {
	srv   *http.Server
	url   string
	down  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
		}
		return c, err
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "link down", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// cut closes every connection to the broker and refuses new ones.
func (p *proxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() { p.down.Store(false) }

// pngFile writes a small image for the upload.
func pngFile(t testing.TB) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 400, 300))
	for y := range 300 {
		for x := range 400 {
			img.Set(x, y, color.RGBA{uint8(x / 2), uint8(y / 2), 180, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sunset.png")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// shot saves a screenshot into docs/img when TERN_SCREENSHOTS=1, else
// into the test's temp dir (the path is exercised either way).
func shot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := t.TempDir()
	if os.Getenv("TERN_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "img")
	}
	c, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	b, err := chromedp.Run(c, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(b) == 0 {
		t.Fatalf("screenshot %s: empty", name)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func login(t testing.TB, ctx context.Context, base, uid, password string) {
	t.Helper()
	run(t, ctx, uid+" opens the page",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(css(`[data-testid=login-uid]`)),
		chromedp.SendKeys(css(`[data-testid=login-uid]`), uid),
		chromedp.SendKeys(css(`[data-testid=login-password]`), password),
	)
}

func submitLogin(t testing.TB, ctx context.Context, uid string) {
	t.Helper()
	run(t, ctx, uid+" logs in",
		chromedp.Click(css(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(css(`[data-testid=conv-list]`)),
	)
	until(t, ctx, uid+" online", `document.body.dataset.conn === "online"`)
}

// device is a paho device of bob's taking part in the conversation.
type device struct {
	c  paho.Client
	mu sync.Mutex
	in []map[string]any
	ch chan struct{}
}

func (d *device) got(body string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range d.in {
		if ev["t"] == "msg" && ev["b"] == body {
			return true
		}
	}
	return false
}

func (d *device) waitFor(t testing.TB, body string) {
	t.Helper()
	deadline := time.After(step)
	for !d.got(body) {
		select {
		case <-d.ch:
		case <-deadline:
			t.Fatalf("paho device never got %q", body)
		}
	}
}

func (d *device) send(t testing.TB, to, cmid, body string) {
	t.Helper()
	p, _ := json.Marshal(map[string]any{"to": to, "cmid": cmid, "b": body})
	brokertest.Wait(t, d.c.Publish("im/up/bob/pager/msg", 1, false, p), "pager send")
}

func dialDevice(t testing.TB, b *brokertest.Broker) *device {
	t.Helper()
	d := &device{ch: make(chan struct{}, 64)}
	d.c = b.Dial("bob", "pager", b.Token("bob", "pager"))
	brokertest.Subscribe(t, d.c, "im/u/bob/d/pager/in", 1, func(_ paho.Client, m paho.Message) {
		var ev map[string]any
		if json.Unmarshal(m.Payload(), &ev) != nil {
			return
		}
		d.mu.Lock()
		d.in = append(d.in, ev)
		d.mu.Unlock()
		select {
		case d.ch <- struct{}{}:
		default:
		}
	})
	return d
}

// TestBrowserChat drives two people in real chromium (alice through a
// proxy the test can cut, bob directly) and bob's paho device through a
// whole conversation: login, DM, presence, typing, receipts, edit, react,
// delete, an image upload with its preview, a reload that keeps the
// session, a dropped link with messages missed and caught up in order,
// a group, search, and the kiosk view.
func TestBrowserChat(t *testing.T) {
	browser := newBrowser(t)
	b := brokertest.Start(t)
	b.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	b.AddUser("carol", "carol-password")
	link := newProxy(t, b.HTTPURL())
	alice, bob := person(t, browser), person(t, browser)
	pager := dialDevice(t, b)

	// Login; the screenshot shows the form filled in.
	login(t, alice, link.url, "alice", "alice-password")
	shot(t, alice, "login.png")
	submitLogin(t, alice, "alice")
	login(t, bob, b.HTTPURL(), "bob", "bob-password")
	submitLogin(t, bob, "bob")

	// alice opens a DM with bob by uid and writes.
	const cv = "d:alice:bob"
	run(t, alice, "alice opens a DM",
		chromedp.SendKeys(css(`[data-testid=new-dm-uid]`), "bob"),
		chromedp.Click(css(`[data-testid=new-dm-submit]`)),
		chromedp.WaitVisible(css(`[data-testid=conv-item][data-cv="`+cv+`"]`)),
		chromedp.SendKeys(css(`[data-testid=composer]`), "hello bob"),
		chromedp.Click(css(`[data-testid=send]`)),
	)
	until(t, alice, "alice sees her message stored", msgWith("hello bob"))
	pager.waitFor(t, "hello bob")

	// bob sees the unread conversation, opens it; alice sees ✓✓.
	until(t, bob, "bob's unread count", q(`[data-cv="`+cv+`"] [data-testid=unread]`)+`?.textContent === "1"`)
	clickItem(t, bob, "bob opens the DM", `[data-testid=conv-item][data-cv="`+cv+`"]`)
	until(t, bob, "bob reads hello", msgWith("hello bob"))
	until(t, alice, "read receipt", q(`[data-testid=msg][data-from=alice] [data-testid=receipt]`)+`?.dataset.state === "read"`)
	until(t, alice, "read receipt shows ✓✓", q(`[data-testid=msg][data-from=alice] [data-testid=receipt]`)+`?.textContent === "✓✓"`)

	// Presence both ways.
	until(t, alice, "alice sees bob online", q(`[data-testid=presence][data-uid=bob]`)+`?.dataset.s === "on"`)
	until(t, bob, "bob sees alice online", q(`[data-testid=presence][data-uid=alice]`)+`?.dataset.s === "on"`)

	// Typing, then bob answers.
	run(t, bob, "bob types", chromedp.SendKeys(css(`[data-testid=composer]`), "hi alice"))
	until(t, alice, "alice sees bob typing", q(`[data-testid=typing]`)+`.textContent.includes("bob is typing")`)
	run(t, bob, "bob sends", chromedp.Click(css(`[data-testid=send]`)))
	until(t, alice, "alice gets bob's answer", msgWith("hi alice"))
	until(t, alice, "and hears it", `document.getElementById("announce").textContent === "bob: hi alice"`)

	// bob's paho device takes part: the pages see its message.
	pager.send(t, "alice", "p-1", "from the pager")
	until(t, alice, "alice sees the pager's message", msgWith("from the pager"))
	until(t, bob, "bob's page sees his pager's message", msgWith("from the pager"))

	// Edit, react, delete.
	run(t, alice, "alice sends a typo",
		chromedp.SendKeys(css(`[data-testid=composer]`), "see you at 5"),
		chromedp.Click(css(`[data-testid=send]`)))
	until(t, alice, "typo stored", msgWith("see you at 5"))
	lastMine := `[...document.querySelectorAll('[data-testid=msg][data-from=alice][data-id]')].pop()`
	eval[any](t, alice, "alice edits", lastMine+`.querySelector('[data-testid=edit]').click()`)
	eval[any](t, alice, "clear the composer", `document.querySelector("[data-testid=composer]").value = ""`)
	run(t, alice, "alice saves the edit",
		chromedp.SendKeys(css(`[data-testid=composer]`), "see you at 6"),
		chromedp.Click(css(`[data-testid=send]`)))
	until(t, bob, "bob sees the edit", msgWith("see you at 6"))
	eval[any](t, bob, "bob reacts", `[...document.querySelectorAll('[data-testid=msg][data-from=alice][data-id]')].pop().querySelector('[data-testid=react]').click()`)
	until(t, alice, "alice sees the reaction", lastMine+`.querySelector('[data-testid=reaction]')?.textContent === "👍 1"`)
	eval[any](t, alice, "alice deletes", lastMine+`.querySelector('[data-testid=delete]').click()`)
	eval[any](t, alice, "alice confirms", lastMine+`.querySelector('[data-testid=delete]').click()`)
	until(t, bob, "bob sees the deletion", `[...document.querySelectorAll('[data-testid=msg][data-from=alice][data-id]')].pop().classList.contains("deleted")`)

	// An image with an upload progress bar and its preview.
	run(t, alice, "alice attaches an image", chromedp.SetUploadFiles(css(`[data-testid=attach]`), []string{pngFile(t)}))
	until(t, alice, "the preview shows", q(`[data-testid=preview]`)+`?.complete && `+q(`[data-testid=preview]`)+`.naturalWidth > 0 && `+q(`[data-testid=preview]`)+`.src.startsWith("blob:")`)
	until(t, alice, "the progress bar went to 100 and away", q(`[data-testid=upload-progress]`)+`.value === 100 && document.getElementById("upload").hidden`)
	// The server filled in the name, size and type; bob, a member, may
	// read the file: he sees the preview too.
	until(t, bob, "bob gets the attachment with its name", `[...document.querySelectorAll('[data-testid=att-name]')].some(e => e.textContent.startsWith("📎 sunset.png ("))`)
	until(t, bob, "bob sees the preview", q(`[data-testid=preview]`)+`?.complete && `+q(`[data-testid=preview]`)+`.naturalWidth > 0 && `+q(`[data-testid=preview]`)+`.src.startsWith("blob:")`)
	shot(t, alice, "chat.png")

	// A reload keeps the session and the conversation.
	run(t, alice, "alice reloads", chromedp.Reload())
	until(t, alice, "still logged in", `!document.getElementById("app").hidden && document.getElementById("login").hidden`)
	until(t, alice, "online again", `document.body.dataset.conn === "online"`)
	clickItem(t, alice, "alice reopens the DM", `[data-testid=conv-item][data-cv="`+cv+`"]`)
	until(t, alice, "history after reload", msgWith("hi alice"))
	until(t, alice, "receipts after reload", q(`[data-testid=msg][data-from=alice][data-id] [data-testid=receipt]`)+`?.dataset.state === "read"`)

	// The link drops: the page says so; what is sent meanwhile appears
	// after it comes back, in order.
	link.cut()
	until(t, alice, "reconnecting shown", q(`[data-testid=conn]`)+`.textContent === "reconnecting…" && !`+q(`[data-testid=conn]`)+`.hidden`)
	run(t, bob, "bob writes while alice is away",
		chromedp.SendKeys(css(`[data-testid=composer]`), "missed 1"), chromedp.Click(css(`[data-testid=send]`)))
	until(t, bob, "missed 1 stored", msgWith("missed 1"))
	pager.send(t, "alice", "p-2", "missed 2")
	pager.send(t, "alice", "p-3", "missed 3")
	until(t, bob, "missed 3 stored", msgWith("missed 3"))
	link.restore()
	until(t, alice, "back online", `document.body.dataset.conn === "online"`)
	until(t, alice, "caught up", msgWith("missed 3"))
	order := eval[[]string](t, alice, "read the order", `[...document.querySelectorAll('[data-testid=msg][data-id] [data-testid=msg-body]')].map(e => e.textContent).filter(s => s.startsWith("missed"))`)
	if strings.Join(order, ",") != "missed 1,missed 2,missed 3" {
		t.Fatalf("after the drop alice shows %q, want missed 1..3 in order", order)
	}

	// A group with a member added.
	run(t, alice, "alice creates a group",
		chromedp.SendKeys(css(`[data-testid=new-group-name]`), "Ops"),
		chromedp.SendKeys(css(`[data-testid=new-group-members]`), "bob"),
		chromedp.Click(css(`[data-testid=new-group-submit]`)),
		chromedp.WaitVisible(css(`[data-testid=conv-item][data-cv^="g:"]`)),
		chromedp.SendKeys(css(`[data-testid=composer]`), "welcome to ops"),
		chromedp.Click(css(`[data-testid=send]`)))
	until(t, bob, "bob sees the group by its name", q(`[data-testid=conv-item][data-cv^="g:"] .cv-name`)+`?.textContent === "Ops"`)
	run(t, alice, "alice adds carol",
		chromedp.SendKeys(css(`[data-testid=add-member-uid]`), "carol"),
		chromedp.Click(css(`[data-testid=add-member-submit]`)))
	until(t, alice, "carol's membership shows", `[...document.querySelectorAll('[data-testid=event]')].some(e => e.textContent.includes("add carol"))`)

	// ✓ delivered while bob looks at another conversation, ✓✓ once he
	// opens it.
	clickItem(t, bob, "bob looks at the group", `[data-testid=conv-item][data-cv^="g:"]`)
	clickItem(t, alice, "alice back to the DM", `[data-testid=conv-item][data-cv="`+cv+`"]`)
	run(t, alice, "alice asks", chromedp.SendKeys(css(`[data-testid=composer]`), "are you there?"), chromedp.Click(css(`[data-testid=send]`)))
	lastReceipt := `[...document.querySelectorAll('[data-testid=msg][data-from=alice][data-id]')].pop().querySelector('[data-testid=receipt]')`
	until(t, alice, "delivered", msgWith("are you there?")+` && `+lastReceipt+`.dataset.state === "dlv" && `+lastReceipt+`.textContent === "✓"`)
	clickItem(t, bob, "bob opens the DM again", `[data-testid=conv-item][data-cv="`+cv+`"]`)
	until(t, alice, "read", lastReceipt+`.dataset.state === "read"`)

	// Search: the message found, its match marked; a result opens its
	// conversation.
	run(t, alice, "alice searches", chromedp.SendKeys(css(`[data-testid=search]`), "hello\r"))
	until(t, alice, "search answered", q(`[data-testid=search-result][data-cv="`+cv+`"] mark`)+`?.textContent === "hello"`)
	clickItem(t, alice, "open the result", `[data-testid=search-result][data-cv="`+cv+`"]`)
	until(t, alice, "the result's conversation", `document.getElementById("chat-title").textContent === "bob"`)

	// A phone-sized screen shows the list or the conversation, with a way
	// back; the keyboard opens a conversation (Enter on a focused item).
	run(t, bob, "bob's phone", chromedp.EmulateViewport(390, 844))
	shown := func(id string) string {
		return `getComputedStyle(document.getElementById("` + id + `")).display !== "none"`
	}
	until(t, bob, "phone: conversation only", shown("chat")+` && !`+shown("side"))
	run(t, bob, "phone: back", chromedp.Click(css(`#back`)))
	until(t, bob, "phone: list only", shown("side")+` && !`+shown("chat"))
	eval[any](t, bob, "keyboard: focus the DM", q(`[data-testid=conv-item][data-cv="`+cv+`"]`)+`.focus()`)
	run(t, bob, "keyboard: Enter", chromedp.KeyEvent("\r"))
	until(t, bob, "keyboard: the DM opens", shown("chat")+` && `+msgWith("missed 3"))
	shot(t, bob, "phone.png")
	run(t, bob, "bob's desktop", chromedp.EmulateViewport(1100, 720))

	// Kiosk: one conversation, large type, no composer.
	run(t, bob, "bob opens the kiosk view", chromedp.Navigate(b.HTTPURL()+"/?kiosk="+cv))
	until(t, bob, "kiosk shows the conversation", msgWith("missed 3"))
	composerShown := eval[bool](t, bob, "kiosk hides the composer", `getComputedStyle(document.getElementById("compose")).display !== "none" || getComputedStyle(document.getElementById("side")).display !== "none"`)
	if composerShown {
		t.Fatal("kiosk view shows the composer or the conversation list")
	}
	shot(t, bob, "kiosk.png")
}

// TestBrowserHistory: a conversation longer than a page loads its newest
// page, shows the unread count and last message in the list, and scrolls
// back to the first message, in order.
func TestBrowserHistory(t *testing.T) {
	browser := newBrowser(t)
	b := brokertest.Start(t)
	b.AddUser("alice", "alice-password")
	b.AddUser("carol", "carol-password")
	carol := b.Dial("carol", "phone", b.Token("carol", "phone"))
	const n = 120
	for i := 1; i <= n; i++ {
		p, _ := json.Marshal(map[string]any{"to": "alice", "cmid": fmt.Sprintf("h-%d", i), "b": fmt.Sprintf("line %d", i)})
		brokertest.Wait(t, carol.Publish("im/up/carol/phone/msg", 1, false, p), "carol send")
	}
	alice := person(t, browser)
	// A wrong password is said so, and the form stays.
	login(t, alice, b.HTTPURL(), "alice", "wrong-password")
	run(t, alice, "wrong password", chromedp.Click(css(`[data-testid=login-submit]`)))
	until(t, alice, "login refused", `document.getElementById("login-error").textContent === "Wrong user or password."`)
	login(t, alice, b.HTTPURL(), "alice", "alice-password")
	submitLogin(t, alice, "alice")
	const cv = "d:alice:carol"
	until(t, alice, "unread count", q(`[data-cv="`+cv+`"] [data-testid=unread]`)+`?.textContent === "120"`)
	until(t, alice, "last message", q(`[data-cv="`+cv+`"] [data-testid=conv-last]`)+`?.textContent === "carol: line 120"`)
	clickItem(t, alice, "open", `[data-testid=conv-item][data-cv="`+cv+`"]`)
	until(t, alice, "newest page", msgWith("line 120")+` && !`+msgWith("line 70"))
	for i := 0; i < 5 && !eval[bool](t, alice, "complete?", msgWith("line 1")); i++ {
		eval[any](t, alice, "scroll to the top", `document.getElementById("msgs").scrollTop = 0`)
		until(t, alice, "an older page", `document.querySelectorAll("[data-testid=msg][data-id]").length > `+fmt.Sprint(50*(i+1)))
	}
	bodies := eval[[]string](t, alice, "read", `[...document.querySelectorAll('[data-testid=msg][data-id] [data-testid=msg-body]')].map(e => e.textContent)`)
	if len(bodies) != n {
		t.Fatalf("%d messages shown after scrolling back, want %d", len(bodies), n)
	}
	for i, body := range bodies {
		if body != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("message %d is %q: out of order", i, body)
		}
	}
	until(t, alice, "unread cleared", q(`[data-cv="`+cv+`"] [data-testid=unread]`)+` === null`)

	// A refused send is said so and leaves nothing pending.
	eval[any](t, alice, "a body too large", `(() => { document.getElementById("composer").value = "x".repeat(9000); document.getElementById("compose").requestSubmit(); return 1; })()`)
	until(t, alice, "413 shown", `document.getElementById("chat-error").textContent.startsWith("Not sent (413)") && `+q(`[data-testid=receipt][data-state=pending]`)+` === null`)

	// A revoked token ends the session: the page asks to log in again.
	did := eval[string](t, alice, "did", `JSON.parse(localStorage.getItem("tern.session")).did`)
	if _, err := b.Accounts().RevokeTokens("alice", did, ""); err != nil {
		t.Fatal(err)
	}
	if b.Kick("alice", did) != 1 {
		t.Fatalf("kick alice.%s: no session", did)
	}
	until(t, alice, "back to the login form", `!document.getElementById("login").hidden && document.getElementById("login-error").textContent.includes("log in again") && localStorage.getItem("tern.session") === null`)
}

// TestHighlight runs the page's snippet renderer in chromium: marks
// become <mark> elements, entities become text, and nothing else becomes
// markup.
func TestHighlight(t *testing.T) {
	browser := newBrowser(t)
	b := brokertest.Start(t)
	page := person(t, browser)
	run(t, page, "open the page", chromedp.Navigate(b.HTTPURL()+"/"), chromedp.WaitVisible(css(`[data-testid=login-uid]`)))
	for _, tc := range []struct{ hl, text, marks string }{
		{"on my <mark>way</mark>", "on my way", "way"},
		{"a &lt;b&gt; <mark>x&amp;y</mark> &#39;z&#39; &#34;q&#34;", `a <b> x&y 'z' "q"`, "x&y"},
		{"&lt;img src=x onerror=alert(1)&gt;<mark>hit</mark>", "<img src=x onerror=alert(1)>hit", "hit"},
		{"<b>raw</b> <mark>m</mark>", "<b>raw</b> m", "m"},
		{"", "", ""},
	} {
		expr := fmt.Sprintf(`import("/js/text.js").then(m => { const box = document.createElement("div"); box.append(...m.highlight(%q)); return JSON.stringify([box.textContent, [...box.querySelectorAll("mark")].map(e => e.textContent).join("|"), box.querySelectorAll("*").length === box.querySelectorAll("mark").length]); })`, tc.hl)
		c, cancel := context.WithTimeout(page, step)
		got, err := chromedp.Run(c, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
		cancel()
		if err != nil {
			t.Fatalf("highlight %q: %v", tc.hl, err)
		}
		var res []any
		if err := json.Unmarshal([]byte(got), &res); err != nil {
			t.Fatal(err)
		}
		if len(res) != 3 || res[0] != tc.text || res[1] != tc.marks || res[2] != true {
			t.Errorf("highlight %q = %q, want text %q, marks %q, no other element", tc.hl, res, tc.text, tc.marks)
		}
	}
}

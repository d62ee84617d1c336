package messaging_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/internal/searchproc"
)

// indexed waits until the broker's search index holds the event id.
func indexed(t testing.TB, b *brokertest.Broker, id ulid.ULID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	if err := b.Search().Wait(ctx, id); err != nil {
		t.Fatalf("index did not reach %s: %v", id, err)
	}
}

// search runs the search RPC and returns the bodies of the items and the
// result.
func (d *dev) search(args map[string]any) ([]string, codec.SearchResult) {
	d.t.Helper()
	var r codec.SearchResult
	d.ok("search", args, &r)
	bodies := make([]string, len(r.Items))
	for i, it := range r.Items {
		bodies[i] = it.B
	}
	return bodies, r
}

// mine sends a message and returns it as the sender's own copy.
func (d *dev) mine(to, cmid, body string) codec.Event {
	d.t.Helper()
	d.text(to, cmid, body)
	for {
		if ev := d.next(); ev.CMID == cmid && ev.From == d.uid {
			return ev
		}
	}
}

// drain drops the events queued on the device's in topic.
func (d *dev) drain() {
	for {
		select {
		case <-d.in:
		default:
			return
		}
	}
}

func TestSearchVisibility(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob", "carol", "dave", "eve")
	a, bo, ca, da, ev := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1"), connect(t, b, "carol", "c1"),
		connect(t, b, "dave", "d1"), connect(t, b, "eve", "e1")

	a.ok("group.create", map[string]any{"gid": "ops", "name": "Ops", "members": []string{"bob"}}, nil)
	a.mine("g:ops", "1", "launch plan alpha")
	a.ok("group.add", map[string]any{"gid": "ops", "uids": []string{"carol"}}, nil) // a late joiner
	bo.mine("g:ops", "2", "launch plan beta")
	bo.ok("group.leave", map[string]any{"gid": "ops"}, nil) // bob reads up to here
	a.mine("g:ops", "3", "launch plan gamma")
	gone := a.mine("g:ops", "4", "launch plan delta")
	a.send(map[string]any{"op": "del", "id": gone.ID.String(), "cmid": "5"})
	a.send(map[string]any{"to": "g:ops", "cmid": "6", "b": "launch plan secret", "ct": "application/vnd.tern.e2ee",
		"e2e": map[string]string{"carol.c1": "00ff"}})
	last := a.mine("dave", "7", "launch in a DM")
	indexed(t, b, last.ID)

	for _, c := range []struct {
		d    *dev
		want []string
	}{
		{a, []string{"launch in a DM", "launch plan gamma", "launch plan beta", "launch plan alpha"}},
		{bo, []string{"launch plan beta", "launch plan alpha"}}, // left: up to the leave
		{ca, []string{"launch plan gamma", "launch plan beta"}}, // joined after alpha
		{da, []string{"launch in a DM"}},
		{ev, []string{}}, // in nothing
	} {
		got, _ := c.d.search(map[string]any{"q": "launch"})
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.d.uid, got, c.want)
		}
	}
	// Deleted and E2EE messages never match, whoever asks.
	for _, q := range []string{"delta", "secret"} {
		if got, _ := a.search(map[string]any{"q": q}); len(got) != 0 {
			t.Errorf("%q matched %q", q, got)
		}
	}
	// cv narrows; a conversation the caller never was in is 403.
	if got, _ := a.search(map[string]any{"q": "launch", "cv": "g:ops", "max": 1}); !slices.Equal(got, []string{"launch plan gamma"}) {
		t.Errorf("cv g:ops max 1: %q", got)
	}
	ev.fail("search", map[string]any{"q": "launch", "cv": "g:ops"}, 403)
	da.fail("search", map[string]any{"q": "launch", "cv": "d:alice:bob"}, 403)
}

func TestSearchQueries(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a, bo := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")
	var sent []codec.Event
	for i, body := range []string{
		"Réunion au CAFÉ à midi",
		"the quick brown fox",
		"brown quick the fox",
		"a <b>bold</b> cafe & co",
	} {
		sent = append(sent, a.mine("bob", string(rune('a'+i)), body))
	}
	fromBob := bo.mine("alice", "b", "cafe from bob")
	indexed(t, b, fromBob.ID)

	for _, c := range []struct {
		q    string
		want []string
	}{
		{"cafe", []string{"cafe from bob", "a <b>bold</b> cafe & co", "Réunion au CAFÉ à midi"}},
		{"RÉUNION midi", []string{"Réunion au CAFÉ à midi"}},
		{`"quick brown"`, []string{"the quick brown fox"}},
		{"quick brown", []string{"brown quick the fox", "the quick brown fox"}},
		{"cafe from:bob", []string{"cafe from bob"}},
		{"from:alice fox", []string{"brown quick the fox", "the quick brown fox"}},
		{"cafe fox", []string{}},
	} {
		if got, _ := a.search(map[string]any{"q": c.q}); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.q, got, c.want)
		}
	}
	// hl marks the match in the text, escaped.
	_, r := a.search(map[string]any{"q": "cafe"})
	if hl := r.Items[1].HL; hl != "a &lt;b&gt;bold&lt;/b&gt; <mark>cafe</mark> &amp; co" {
		t.Errorf("hl %q", hl)
	}
	if hl := r.Items[2].HL; !strings.Contains(hl, "<mark>CAFÉ</mark>") {
		t.Errorf("hl %q", hl)
	}
	if r.Items[0].ID != fromBob.ID || r.Items[0].Seq != fromBob.Seq || r.Items[0].CV != "d:alice:bob" {
		t.Errorf("item is not the stored event: %+v", r.Items[0])
	}

	// Paging: next is the before of the next page, until none.
	var all []string
	args := map[string]any{"q": "cafe", "max": 1}
	for range 5 {
		got, r := a.search(args)
		all = append(all, got...)
		if r.Next == "" {
			break
		}
		args["before"] = r.Next
	}
	if !slices.Equal(all, []string{"cafe from bob", "a <b>bold</b> cafe & co", "Réunion au CAFÉ à midi"}) {
		t.Errorf("pages: %q", all)
	}

	// An edit re-indexes the message: the new text matches, the old not.
	a.drain()
	a.send(map[string]any{"op": "edit", "id": sent[1].ID.String(), "b": "the slow grey wolf", "cmid": "e"})
	edit := a.next()
	indexed(t, b, edit.ID)
	if got, _ := a.search(map[string]any{"q": "wolf"}); len(got) != 1 || got[0] != "the quick brown fox" {
		t.Errorf("edited: %q (the item is the stored message, as msg.get returns it)", got)
	}
	if got, _ := a.search(map[string]any{"q": `"quick brown"`}); len(got) != 0 {
		t.Errorf("old text of an edited message matched: %q", got)
	}

	// Bad arguments: 400 naming the argument.
	for _, c := range []struct {
		args  map[string]any
		field string
	}{
		{map[string]any{"q": ""}, "q:"},
		{map[string]any{"q": strings.Repeat("x", 600)}, "q:"},
		{map[string]any{"q": "from:Bad!"}, "q:"},
		{map[string]any{"q": strings.Repeat("w ", 20)}, "q:"},
		{map[string]any{"q": "x", "max": 101}, "max:"},
		{map[string]any{"q": "x", "max": -1}, "max:"},
		{map[string]any{"q": "x", "before": "nope"}, "before:"},
	} {
		r := a.call("search", c.args)
		if r.OK || r.Err == nil || r.Err.Code != 400 || !strings.HasPrefix(r.Err.Msg, c.field) {
			t.Errorf("%v: want 400 %s…, got ok=%v err=%+v", c.args, c.field, r.OK, r.Err)
		}
	}
	a.fail("search", map[string]any{"q": "x", "cv": "nonsense"}, 400)
	a.fail("search", map[string]any{"q": 5}, 400)
}

// TestSearchCatchUp: events committed while the index was not following
// (search off, then a restart with it on) are indexed from its stored
// position at start; search.enabled false answers 501.
func TestSearchCatchUp(t *testing.T) {
	t.Parallel()
	cfg := brokertest.Config(t)
	b := brokertest.StartConfig(t, cfg)
	users(b, "alice", "bob")
	a := connect(t, b, "alice", "p1")
	first := a.mine("bob", "1", "before the restart")
	indexed(t, b, first.ID)
	brokertest.Disconnect(t, a.c)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	off := *cfg
	off.Search = config.Search{Enabled: false, Batch: 1, Poll: 0}
	b = brokertest.StartConfig(t, &off)
	a = connect(t, b, "alice", "p1")
	a.fail("search", map[string]any{"q": "restart"}, 501)
	var behind []codec.Event
	for i := range 30 {
		behind = append(behind, a.mine("bob", string(rune('a'+i)), "while the index was off"))
	}
	brokertest.Disconnect(t, a.c)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// The index on disk is behind: its stored position is the first run's.
	x, err := search.Open(broker.SearchDir(cfg.Data), search.Options{Source: b.Store(), Batch: 10, PruneEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if c := x.Cursor(); c != first.ID {
		t.Errorf("stored cursor %s, want %s", c, first.ID)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}

	b = brokertest.StartConfig(t, cfg)
	indexed(t, b, behind[len(behind)-1].ID)
	a = connect(t, b, "alice", "p1")
	got, _ := a.search(map[string]any{"q": "index off", "max": 100})
	if len(got) != 30 {
		t.Fatalf("after catching up: %d hits, want 30", len(got))
	}
	if got, _ := a.search(map[string]any{"q": "restart"}); !slices.Equal(got, []string{"before the restart"}) {
		t.Fatalf("old hit: %q", got)
	}
}

// TestSearchHTTP: GET /v1/search with a device token from /v1/login
// answers as the search RPC does (§15), with the same visibility: carol,
// who is in no conversation with alice, finds nothing.
func TestSearchHTTP(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob", "carol")
	a := connect(t, b, "alice", "p1")
	ev := a.mine("bob", "h1", "meet at the harbour")
	indexed(t, b, ev.ID)

	get := func(uid, query string) (int, codec.SearchResult) {
		t.Helper()
		req, _ := http.NewRequest("GET", b.HTTPURL()+"/v1/search?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+b.WebToken(t, uid, pw))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r codec.SearchResult
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, r
	}
	if code, r := get("bob", "q=HARBOUR"); code != 200 || len(r.Items) != 1 || r.Items[0].ID != ev.ID || r.Items[0].HL == "" {
		t.Fatalf("bob: %d %+v", code, r)
	}
	if code, r := get("carol", "q=harbour"); code != 200 || len(r.Items) != 0 {
		t.Fatalf("carol: %d %+v", code, r)
	}
	if code, _ := get("bob", "q=harbour&max=x"); code != 400 {
		t.Fatalf("bad max: %d", code)
	}
	if code, _ := get("bob", "q=harbour&cv=g:nope"); code != 403 && code != 404 {
		t.Fatalf("foreign cv: %d", code)
	}
	req, _ := http.NewRequest("GET", b.HTTPURL()+"/v1/search?q=harbour", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
}

// TestSearchInWorker searches through the broker with the index in its
// child process (search.process, the default outside tests): before and
// after the worker was killed, and with no worker at all.
func TestSearchInWorker(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.Search.Process = true })
	users(b, "alice", "bob")
	a, bo := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")
	first := a.mine("bob", "1", "quarterly numbers attached")
	indexed(t, b, first.ID)
	if got, _ := bo.search(map[string]any{"q": "Quarterly"}); !slices.Equal(got, []string{"quarterly numbers attached"}) {
		t.Fatalf("search: %q", got)
	}

	w, ok := b.Search().(*searchproc.Worker)
	if !ok {
		t.Fatalf("search.process: the index is a %T", b.Search())
	}
	old := w.Pid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Sent while the worker is down or starting: the next one indexes it.
	second := a.mine("bob", "2", "quarterly review moved")
	deadline := time.Now().Add(brokertest.Timeout)
	for pid := w.Pid(); pid == 0 || pid == old; pid = w.Pid() {
		if time.Now().After(deadline) {
			t.Fatal("the broker started no new worker")
		}
		time.Sleep(10 * time.Millisecond) // polling the supervisor
	}
	indexed(t, b, second.ID)
	if got, _ := bo.search(map[string]any{"q": "quarterly"}); !slices.Equal(got, []string{"quarterly review moved", "quarterly numbers attached"}) {
		t.Fatalf("search after the restart: %q", got)
	}
	res, err := http.Get(b.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(res.Body)
	if cerr := res.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil || !strings.Contains(string(metrics), "\ntern_search_worker_restarts_total 1\n") {
		t.Fatalf("tern_search_worker_restarts_total after one restart: %v\n%s", err, metrics)
	}

	// No worker: search says so, and sending goes on.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	bo.fail("search", map[string]any{"q": "quarterly"}, 503)
	a.mine("bob", "3", "still sending")
}

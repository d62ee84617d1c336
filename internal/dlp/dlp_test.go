package dlp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/dlp"
	"github.com/tern-im/tern/internal/im"
)

var rules = []dlp.Rule{
	{Name: "card", Match: `\b\d(?:[ -]?\d){12,15}\b`, Action: "redact"},
	{Name: "codename", Match: `(?i)project\s+nightingale`, Action: "block"},
	{Name: "salary", Match: `(?i)\bsalar(y|ies)\b`, Action: "flag"},
}

func TestRules(t *testing.T) {
	t.Parallel()
	p, err := dlp.New(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in, action, body, rule string
	}{
		{"hello", im.DLPAllow, "hello", ""},
		{"card 4111 1111 1111 1111 ok?", im.DLPRedact, "card [redacted] ok?", "card"},
		{"two 4111111111111111 and 5500000000000004", im.DLPRedact, "two [redacted] and [redacted]", "card"},
		{"about Project  Nightingale", im.DLPBlock, "", "codename"},
		{"salaries are due", im.DLPFlag, "salaries are due", "salary"},
		{"salary to 4111111111111111", im.DLPRedact, "salary to [redacted]", "card,salary"},
		{"4111111111111111 for project nightingale", im.DLPBlock, "", "card,codename"},
	} {
		v, err := p.Check(context.Background(), "alice", "d:alice:bob", c.in)
		if err != nil {
			t.Fatal(err)
		}
		if v.Action != c.action || v.Rule != c.rule || (c.action != im.DLPBlock && v.Body != c.body) {
			t.Errorf("%q → %+v, want %s %q by %q", c.in, v, c.action, c.body, c.rule)
		}
	}
	if _, err := dlp.New([]dlp.Rule{{Name: "x", Match: "(", Action: "block"}}, nil); err == nil {
		t.Error("bad regexp accepted")
	}
	if _, err := dlp.New([]dlp.Rule{{Name: "x", Match: "a", Action: "drop"}}, nil); err == nil {
		t.Error("bad action accepted")
	}
}

// webhook answers with fn's action, or stalls past the timeout.
func webhook(t *testing.T, fn func(req map[string]string) (int, string)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		code, body := fn(req)
		if code == 0 { // stall past the client's timeout
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got map[string]string
	last := func() map[string]string { mu.Lock(); defer mu.Unlock(); return got }
	srv := webhook(t, func(req map[string]string) (int, string) {
		mu.Lock()
		got = req
		mu.Unlock()
		switch {
		case strings.Contains(req["b"], "stall"):
			return 0, ""
		case strings.Contains(req["b"], "fail"):
			return 500, ""
		case strings.Contains(req["b"], "junk"):
			return 200, `{"action":"explode"}`
		case strings.Contains(req["b"], "secret"):
			return 200, `{"action":"block"}`
		case strings.Contains(req["b"], "phone"):
			return 200, `{"action":"redact","b":"call me at [number]"}`
		case strings.Contains(req["b"], "hmm"):
			return 200, `{"action":"flag"}`
		}
		return 200, `{"action":"allow"}`
	})
	for _, closed := range []bool{false, true} {
		p, err := dlp.New(rules[:1], &dlp.Webhook{URL: srv.URL, Timeout: 200 * time.Millisecond, FailClosed: closed})
		if err != nil {
			t.Fatal(err)
		}
		var hookErrs int
		p.OnWebhookError = func(error) { hookErrs++ }
		fail := im.DLPAllow
		if closed {
			fail = im.DLPBlock
		}
		for _, c := range []struct{ in, action, body string }{
			{"fine", im.DLPAllow, "fine"},
			{"a secret", im.DLPBlock, ""},
			{"my phone 555", im.DLPRedact, "call me at [number]"},
			{"hmm 4111111111111111", im.DLPRedact, "hmm [redacted]"}, // flag is weaker than the rule's redact
			{"stall", fail, "stall"},
			{"fail", fail, "fail"},
			{"junk", fail, "junk"},
		} {
			v, err := p.Check(context.Background(), "alice", "g:ops", c.in)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != c.action || (v.Action != im.DLPBlock && v.Body != c.body) {
				t.Errorf("closed=%v %q → %+v, want %s %q", closed, c.in, v, c.action, c.body)
			}
		}
		if hookErrs != 3 {
			t.Errorf("closed=%v: %d webhook errors reported, want 3", closed, hookErrs)
		}
		if g := last(); g["uid"] != "alice" || g["cv"] != "g:ops" {
			t.Errorf("webhook got %v", g)
		}
	}
	// The webhook sees the text as it would be stored: redacted already.
	p, _ := dlp.New(rules[:1], &dlp.Webhook{URL: srv.URL, Timeout: time.Second})
	if _, err := p.Check(context.Background(), "alice", "g:ops", "card 4111111111111111"); err != nil || last()["b"] != "card [redacted]" {
		t.Errorf("webhook got %q, %v", last()["b"], err)
	}
}

// BenchmarkCheck: the cost of the rules per message, by rule count and
// body size (no webhook).
func BenchmarkCheck(b *testing.B) {
	base := []dlp.Rule{
		{Name: "card", Match: `\b\d(?:[ -]?\d){12,15}\b`, Action: "redact"},
		{Name: "iban", Match: `\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b`, Action: "redact"},
		{Name: "codename", Match: `(?i)project\s+nightingale`, Action: "block"},
		{Name: "salary", Match: `(?i)\bsalar(y|ies)\b`, Action: "flag"},
		{Name: "key", Match: `-----BEGIN [A-Z ]*PRIVATE KEY-----`, Action: "block"},
	}
	for _, n := range []int{1, 5, 20} {
		var rs []dlp.Rule
		for i := range n {
			r := base[i%len(base)]
			r.Name = fmt.Sprintf("%s%d", r.Name, i)
			rs = append(rs, r)
		}
		p, err := dlp.New(rs, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{64, 1024, 8192} {
			body := strings.Repeat("on my way, see you at the station in ten minutes ", size/40+1)[:size]
			b.Run(fmt.Sprintf("rules=%d/body=%d", n, size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					if _, err := p.Check(context.Background(), "alice", "d:alice:bob", body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

package messaging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/topics"
)

// auditLines closes b and returns its verified audit lines.
func auditLines(t *testing.T, b *brokertest.Broker) []map[string]any {
	t.Helper()
	dir := b.AuditDir()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(files, true); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	var out []map[string]any
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ln := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
			var m map[string]any
			if err := json.Unmarshal(ln, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}

func hasLine(ls []map[string]any, want map[string]any) bool {
	for _, l := range ls {
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func dlpRules(c *config.Config) {
	c.DLP.Rules = []config.DLPRule{
		{Name: "card", Match: `\b\d(?:[ -]?\d){12,15}\b`, Action: "redact"},
		{Name: "codename", Match: `(?i)project\s+nightingale`, Action: "block"},
		{Name: "salary", Match: `(?i)\bsalar(y|ies)\b`, Action: "flag"},
	}
}

// TestContentPolicy: against a real broker, a block rule refuses a send
// and an edit with err 451 (MQTT 5 PUBACK 0x87) and nothing is stored or
// delivered; a redact rule stores and delivers the match as [redacted];
// a flag rule delivers the message and audits it with its id; an E2EE
// message is not inspected; blocks and flags are in the audit log.
func TestContentPolicy(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, dlpRules)
	users(b, "alice", "bob")
	a, bob := connect(t, b, "alice", "p1"), connect(t, b, "bob", "p1")

	a.text("bob", "c1", "my card is 4111 1111 1111 1111, thanks")
	if ev := bob.next(); ev.B != "my card is [redacted], thanks" {
		t.Fatalf("bob got %q", ev.B)
	}
	sent := a.next()
	a.text("bob", "c2", "status of Project Nightingale?")
	if e := a.nextErr(); e.Code != 451 || e.CMID != "c2" {
		t.Fatalf("err %+v, want 451 for c2", e)
	}
	a.text("bob", "c3", "salaries are due")
	flagged := bob.next()
	if flagged.B != "salaries are due" {
		t.Fatalf("flagged message changed: %q", flagged.B)
	}
	a.next()
	a.send(map[string]any{"op": "edit", "id": sent.ID.String(), "cmid": "c4", "b": "Project nightingale leaked"})
	if e := a.nextErr(); e.Code != 451 || e.CMID != "c4" {
		t.Fatalf("edit err %+v, want 451", e)
	}
	a.send(map[string]any{"op": "edit", "id": sent.ID.String(), "cmid": "c5", "b": "use 5500 0000 0000 0004"})
	if ev := bob.next(); ev.T != "edit" || ev.B != "use [redacted]" {
		t.Fatalf("edit delivered %+v", ev)
	}
	a.next()
	// End-to-end encrypted: not inspected.
	a.send(map[string]any{"to": "bob", "cmid": "c6", "b": "Project Nightingale (ciphertext)", "ct": "application/x-tern-e2e", "e2e": map[string]string{"bob.p1": "00ff"}})
	if ev := bob.next(); ev.B != "Project Nightingale (ciphertext)" {
		t.Fatalf("e2e body %q", ev.B)
	}
	a.next()
	var h codec.HistoryResult
	bob.ok("history", map[string]any{"cv": "d:alice:bob"}, &h)
	var bodies []string
	for _, ev := range h.Items {
		bodies = append(bodies, ev.B)
	}
	if got := strings.Join(bodies, "|"); got != "my card is [redacted], thanks|salaries are due|use [redacted]|Project Nightingale (ciphertext)" {
		t.Fatalf("stored %q", got)
	}
	// MQTT 5: the PUBACK of a blocked send says not authorized (0x87).
	c5, _, err := b.Dial5("alice", "p5", pw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	r, err := c5.Publish(ctx, &paho5.Publish{Topic: topics.Up("alice", "p5", topics.UpMsg), QoS: 1, Payload: []byte(`{"to":"bob","cmid":"x","b":"project nightingale"}`)})
	if r == nil || r.ReasonCode != 0x87 {
		t.Fatalf("PUBACK %+v %v, want 0x87", r, err)
	}
	bob.none(bob.in, "a blocked message")
	resp, err := http.Get(b.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Sends and edits: 2 redacted, 3 blocked, 1 flagged (the E2EE one is
	// not judged).
	for _, want := range []string{`tern_dlp_verdicts_total{action="block"} 3`, `tern_dlp_verdicts_total{action="redact"} 2`,
		`tern_dlp_verdicts_total{action="flag"} 1`, `tern_dlp_verdicts_total{action="allow"} 0`, "tern_audit_lines_total"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	ls := auditLines(t, b)
	for _, want := range []map[string]any{
		{"type": "dlp.block", "uid": "alice", "did": "p1", "reason": "codename", "target": "d:alice:bob"},
		{"type": "dlp.block", "uid": "alice", "did": "p5", "reason": "codename"},
		{"type": "dlp.flag", "uid": "alice", "reason": "salary", "target": flagged.ID.String()},
	} {
		if !hasLine(ls, want) {
			t.Errorf("no audit line %v", want)
		}
	}
}

// TestContentWebhook: the webhook's block is err 451, its redact stores
// its text; when it fails (500 or past its timeout) fail: open lets the
// message through and fail: closed refuses it with 451.
func TestContentWebhook(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ UID, CV, B string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		switch {
		case strings.Contains(req.B, "stall"):
			<-r.Context().Done()
		case strings.Contains(req.B, "down"):
			http.Error(w, "down", 500)
		case strings.Contains(req.B, "secret") && req.UID == "alice" && req.CV == "d:alice:bob":
			w.Write([]byte(`{"action":"block"}`))
		case strings.Contains(req.B, "phone"):
			w.Write([]byte(`{"action":"redact","b":"[phone removed]"}`))
		default:
			w.Write([]byte(`{"action":"allow"}`))
		}
	}))
	t.Cleanup(srv.Close)
	for _, fail := range []string{"open", "closed"} {
		t.Run(fail, func(t *testing.T) {
			t.Parallel()
			b := brokertest.Start(t, func(c *config.Config) {
				c.DLP.Webhook = config.DLPWebhook{URL: srv.URL, Timeout: 300 * time.Millisecond, Fail: fail}
			})
			users(b, "alice", "bob")
			a, bob := connect(t, b, "alice", "p1"), connect(t, b, "bob", "p1")
			a.text("bob", "1", "a secret plan")
			if e := a.nextErr(); e.Code != 451 {
				t.Fatalf("err %+v", e)
			}
			a.text("bob", "2", "my phone is 555")
			if ev := bob.next(); ev.B != "[phone removed]" {
				t.Fatalf("redacted to %q", ev.B)
			}
			a.next()
			for i, body := range []string{"server down?", "stall"} {
				a.text("bob", string(rune('3'+i)), body)
				if fail == "open" {
					if ev := bob.next(); ev.B != body {
						t.Fatalf("fail open: bob got %q", ev.B)
					}
					a.next()
				} else if e := a.nextErr(); e.Code != 451 {
					t.Fatalf("fail closed: err %+v", e)
				}
			}
			bob.none(bob.in, "anything more")
		})
	}
}

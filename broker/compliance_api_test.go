package broker_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/compliance"
	"github.com/tern-im/tern/topics"
)

// TestComplianceAPIRefusals: the compliance routes of the admin API
// answer bad arguments with 400 and a message naming the problem, an
// unknown hold with 404, a missing token with 401, and stream an export
// whose manifest verifies.
func TestComplianceAPIRefusals(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	c := b.Dial("alice", "p1", pw)
	brokertest.Wait(t, c.Publish(topics.Up("alice", "p1", topics.UpMsg), 1, false, `{"to":"bob","cmid":"1","b":"hi"}`), "send")
	do := func(method, path, body string, auth bool) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, b.HTTPURL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth {
			req.Header.Set("Authorization", "Bearer "+b.AdminToken())
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(out)
	}
	for _, c := range []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"GET", "/admin/v1/export?foo=1", "", 400, "unknown export parameter foo"},
		{"GET", "/admin/v1/export?since=yesterday", "", 400, "RFC 3339"},
		{"GET", "/admin/v1/export?cv=bob", "", 400, "cv must be"},
		{"GET", "/admin/v1/export?user=Bob!", "", 400, "bad uid"},
		{"POST", "/admin/v1/holds", `{"uid":"alice","cv":"g:ops"}`, 400, "exactly one of uid and cv"},
		{"POST", "/admin/v1/holds", `{"cv":"g:ops","extra":1}`, 400, "unknown field"},
		{"DELETE", "/admin/v1/holds/01M8EB8TNAG20YCP61RCGW5ZCF", "", 404, "no such hold"},
		{"DELETE", "/admin/v1/holds/x", "", 400, "bad hold id"},
		{"PUT", "/admin/v1/retention/g:ops", `{"retention":"5s"}`, 400, "retention must be"},
		{"PUT", "/admin/v1/retention/ops", `{"retention":"1h"}`, 400, "cv must be"},
		{"PUT", "/admin/v1/retention/g:ops", `{`, 400, "bad request body"},
		{"GET", "/admin/v1/retention/d:b:a", "", 400, "cv must be"},
		{"POST", "/admin/v1/users/nobody/totp", "", 404, "unknown user"},
	} {
		code, body := do(c.method, c.path, c.body, true)
		var e struct{ Error string }
		if code != c.code || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, c.says) {
			t.Errorf("%s %s: %d %s, want %d saying %q", c.method, c.path, code, body, c.code, c.says)
		}
	}
	if code, _ := do("GET", "/admin/v1/export", "", false); code != 401 {
		t.Errorf("export without the token: %d", code)
	}
	code, body := do("GET", "/admin/v1/export?cv=d:alice:bob&since=2020-01-01", "", true)
	if m, err := compliance.VerifyExport(strings.NewReader(body)); code != 200 || err != nil || m.Count != 1 {
		t.Fatalf("export: %d %+v %v\n%s", code, m, err, body)
	}
}

package webui_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tern-im/tern/internal/webui"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(webui.Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name, method, path string
		code               int
		ctype, body        string
	}{
		{"index", "GET", "/", 200, "text/html", `<script type="module" src="js/app.js">`},
		{"module", "GET", "/js/app.js", 200, "text/javascript", "textContent"},
		{"style", "GET", "/app.css", 200, "text/css", ".msgs"},
		{"mqtt.js", "GET", "/vendor/mqtt/mqtt.esm.js", 200, "text/javascript", "export default"},
		{"licence", "GET", "/vendor/mqtt/LICENSE.md", 200, "text/markdown", "MIT"},
		{"missing", "GET", "/nope.js", 404, "text/plain", ""},
		{"no listing", "GET", "/js/", 404, "text/plain", ""},
		{"post", "POST", "/", 405, "text/plain", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.code)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type %q, want %s", ct, tc.ctype)
			}
			if !strings.Contains(string(b), tc.body) {
				t.Errorf("body lacks %q", tc.body)
			}
			if csp := res.Header.Get("Content-Security-Policy"); csp != webui.CSP {
				t.Errorf("CSP %q", csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
		})
	}
}

// TestRevalidate: assets carry an ETag and answer 304 to it.
func TestRevalidate(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(webui.Handler())
	t.Cleanup(srv.Close)
	for _, path := range []string{"/", "/js/app.js", "/vendor/mqtt/mqtt.esm.js"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		tag := res.Header.Get("ETag")
		if res.StatusCode != 200 || tag == "" || res.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("GET %s: %d, ETag %q, Cache-Control %q", path, res.StatusCode, tag, res.Header.Get("Cache-Control"))
		}
		req, err := http.NewRequest("GET", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("If-None-Match", tag)
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotModified {
			t.Fatalf("GET %s with its ETag: %d, want 304", path, res.StatusCode)
		}
	}
}

// TestCSP: the policy forbids inline and foreign script, and the page
// needs neither: no inline script, handler or style attribute anywhere.
func TestCSP(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"script-src 'self'", "style-src 'self'", "default-src 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(webui.CSP, d) {
			t.Errorf("CSP lacks %s", d)
		}
	}
	if strings.Contains(webui.CSP, "unsafe-") {
		t.Error("CSP allows unsafe-*")
	}
	page, err := fs.ReadFile(webui.Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>[^<]|\son[a-z]+=|\sstyle=`)
	for _, m := range regexp.MustCompile(`(?is)<script[^>]*>.*?</script>`).FindAllString(string(page), -1) {
		if !strings.Contains(m, "src=") {
			t.Errorf("inline script: %s", m)
		}
	}
	if m := inline.FindString(string(page)); m != "" {
		t.Errorf("inline script, handler or style: %q", m)
	}
	// The page's own code never writes HTML.
	err = fs.WalkDir(webui.Files(), "js", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(webui.Files(), path)
		if err != nil {
			return err
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPageSize: the page's own JavaScript (MQTT.js excluded) stays under
// 100 KB (issue 14).
func TestPageSize(t *testing.T) {
	t.Parallel()
	total := 0
	err := fs.WalkDir(webui.Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(path, "vendor/") || !strings.HasSuffix(path, ".js") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += int(info.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page JavaScript: %d bytes", total)
	if total == 0 || total >= 100_000 {
		t.Fatalf("page JavaScript is %d bytes, want 0 < size < 100 KB", total)
	}
}

// TestLabels: every input of the page has a label (screen readers, and a
// bigger target on a phone).
func TestLabels(t *testing.T) {
	t.Parallel()
	page, err := fs.ReadFile(webui.Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]bool{}
	for _, m := range regexp.MustCompile(`<label[^>]*\sfor="([^"]+)"`).FindAllStringSubmatch(string(page), -1) {
		labels[m[1]] = true
	}
	inputs := regexp.MustCompile(`<(?:input|textarea|progress)[^>]*\sid="([^"]+)"`).FindAllStringSubmatch(string(page), -1)
	if len(inputs) < 10 {
		t.Fatalf("found %d inputs: the pattern no longer matches the page", len(inputs))
	}
	for _, m := range inputs {
		if !labels[m[1]] {
			t.Errorf("input #%s has no label", m[1])
		}
	}
}

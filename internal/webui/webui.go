// Package webui serves Tern's web client (PROTOCOL §18): a static page,
// plain JavaScript modules and the vendored MQTT.js, embedded in the
// binary. The page speaks the protocol over MQTT over WebSocket at /mqtt
// on the same origin and logs in through POST /v1/login; this package
// serves files only.
//
// Every response carries a Content-Security-Policy that forbids inline
// script and styles, plugins, framing and foreign origins: the page's own
// code renders every server value as text.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every response: scripts, styles
// and connections from this origin only (WebSocket included), images
// from this origin and blob: (previews fetched with the bearer token).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; " +
	"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Files returns the embedded assets (index.html at the root).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil { // "static" is embedded above: cannot happen
		panic(err)
	}
	return sub
}

// Handler serves the web client: GET / is index.html, other paths are
// assets; anything else is 404. Mount it at "/" after more specific
// routes.
func Handler() http.Handler {
	files := http.FileServerFS(Files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path != "/" && strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		// index.html is small and names the modules: always revalidated.
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			h.Set("Cache-Control", "no-cache")
		} else if strings.HasPrefix(r.URL.Path, "/vendor/") {
			h.Set("Cache-Control", "public, max-age=86400")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

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
	"crypto/sha256"
	"embed"
	"encoding/hex"
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

// etags returns a strong ETag per asset path ("/js/app.js"; "/" for the
// page): the SHA-256 of its content, so browsers revalidate with a 304
// and never keep an asset of an older binary.
func etags() (map[string]string, error) {
	tags := map[string]string{}
	err := fs.WalkDir(Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files(), path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags["/"+path] = `"` + hex.EncodeToString(sum[:16]) + `"`
		return nil
	})
	tags["/"] = tags["/index.html"]
	return tags, err
}

// Handler serves the web client: GET / is index.html, other paths are
// assets; anything else is 404. Mount it at "/" after more specific
// routes.
func Handler() http.Handler {
	files := http.FileServerFS(Files())
	tags, err := etags()
	if err != nil { // the embedded files are readable: cannot happen
		panic(err)
	}
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
		// Always revalidated (a 304 by ETag), so a new binary's page never
		// meets an old module.
		h.Set("Cache-Control", "no-cache")
		if tag, ok := tags[r.URL.Path]; ok {
			h.Set("ETag", tag)
		}
		files.ServeHTTP(w, r)
	})
}

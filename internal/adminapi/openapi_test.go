package adminapi

import (
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPICoversRoutes: docs/admin-openapi.yaml documents exactly the
// routes the handler registers under /admin/ (method and path), so the
// document cannot drift from the code.
func TestOpenAPICoversRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/admin-openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("admin-openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, "/admin/") {
			continue
		}
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	h := NewHandler(nil, nil, "t", slog.New(slog.DiscardHandler))
	registered := map[string]bool{}
	for _, p := range h.patterns {
		registered[p] = true
		if !documented[p] {
			t.Errorf("route %q is not in docs/admin-openapi.yaml", p)
		}
	}
	var extra []string
	for p := range documented {
		if !registered[p] {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		t.Errorf("docs/admin-openapi.yaml documents %q, which the handler does not register", p)
	}
	if len(registered) < 10 {
		t.Fatalf("only %d routes registered", len(registered))
	}
}

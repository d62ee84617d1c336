package im_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tern-im/tern"

// goList runs `go list` with args and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the layering test needs the go command: %v", err)
	}
	out, err := exec.Command(goBin, append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestLayers keeps the import graph of docs/architecture.md: hooks
// depend on the domain, never on Badger; the domain and its service know
// neither MQTT nor Badger; hooks never import each other; nothing below broker
// imports broker or a hook.
func TestLayers(t *testing.T) {
	t.Parallel()
	for _, dep := range goList(t, "-deps", module+"/hooks/...") {
		if strings.HasPrefix(dep, "github.com/dgraph-io/badger") || dep == module+"/internal/store" {
			t.Errorf("go list -deps ./hooks/... contains %s: hooks must depend on the im ports only", dep)
		}
	}
	for _, dep := range goList(t, "-deps", module+"/internal/im/...") {
		if strings.HasPrefix(dep, "github.com/dgraph-io/badger") || strings.HasPrefix(dep, "github.com/mochi-mqtt/") ||
			dep == module+"/internal/store" || dep == module+"/internal/session" {
			t.Errorf("internal/im/... depends on %s: the domain and its service know neither Badger nor MQTT", dep)
		}
	}
	for _, line := range goList(t, "-f", `{{.ImportPath}}:{{join .Imports ","}}`, module+"/...") {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Split(imports, ",") {
			switch {
			case strings.HasPrefix(pkg, module+"/hooks/") && strings.HasPrefix(imp, module+"/hooks/"):
				t.Errorf("%s imports %s: hooks never import each other", pkg, imp)
			case (strings.HasPrefix(pkg, module+"/internal/") || strings.HasPrefix(pkg, module+"/topics")) &&
				(imp == module+"/broker" || strings.HasPrefix(imp, module+"/hooks/")):
				t.Errorf("%s imports %s: an arrow up", pkg, imp)
			}
		}
	}
}

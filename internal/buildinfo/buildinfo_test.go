package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	in := Read()
	if in.Version != Version {
		t.Errorf("Version = %q, want %q", in.Version, Version)
	}
	if in.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", in.GoVersion, runtime.Version())
	}
	if in.Commit == "" {
		t.Error("Commit is empty")
	}
	s := in.String()
	for _, want := range []string{"tern " + Version, "commit " + in.Commit, runtime.Version()} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q lacks %q", s, want)
		}
	}
}

package config

import (
	"strings"
	"testing"
)

// TestPlainDecodeErrors: a value of the wrong kind is reported with the
// field's dotted path and the expected kind in plain words, never a Go
// type name.
func TestPlainDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ yaml, want string }{
		{"limits: {connect_timeout: abc}\n", `limits.connect_timeout: "abc" is not a duration such as 30s or 5m`},
		{"limits:\n  write_queue: lots\n", `limits.write_queue: "lots" is not a whole number`},
		{"store: {sync_writes: maybe}\n", `store.sync_writes: "maybe" is not true or false`},
		{"auth: {argon2_memory: huge}\n", `auth.argon2_memory: invalid size "huge" (want e.g. 512B, 128KiB, 4MiB)`},
		{"acl:\n  rules: 5\n", `acl.rules: "5" is not a list`},
		{"limits: {max_clients: 1, write_queue: x}\n", `limits.write_queue: "x" is not a whole number`},
	}
	for _, tt := range tests {
		_, err := Decode(strings.NewReader(tt.yaml))
		if err == nil {
			t.Errorf("%q: no error", tt.yaml)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %q, want %q", tt.yaml, err, tt.want)
		}
		for _, goName := range []string{"time.Duration", "int", "bool", "config.", "!!str", "unmarshal"} {
			if strings.Contains(err.Error(), goName) {
				t.Errorf("%q: error %q shows %q", tt.yaml, err, goName)
			}
		}
	}
}

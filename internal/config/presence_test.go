package config

import (
	"strings"
	"testing"
	"time"
)

func TestPresenceConfig(t *testing.T) {
	t.Parallel()
	cfg, err := Decode(strings.NewReader("presence: {grace: 3s, coalesce: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Presence.Grace != 3*time.Second || cfg.Presence.Coalesce != time.Second {
		t.Fatalf("presence = %+v", cfg.Presence)
	}
	if d := DefaultConfig().Presence; d.Grace != 10*time.Second || d.Coalesce != 2*time.Second {
		t.Fatalf("default presence = %+v", d)
	}
	for _, tc := range []struct {
		name            string
		grace, coalesce time.Duration
		field           string
	}{
		{"ok", time.Second, time.Second, ""},
		{"zero", 0, 0, ""},
		{"negative grace", -1, 0, "presence.grace"},
		{"negative coalesce", time.Second, -1, "presence.coalesce"},
		{"coalesce beyond grace", time.Second, 2 * time.Second, "presence.coalesce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Presence = Presence{Grace: tc.grace, Coalesce: tc.coalesce}
			err := cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

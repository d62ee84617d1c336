package auth

import (
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"alice.p1", "alice.p1"},
		{strings.Repeat("w", 64), strings.Repeat("w", 64)},
		{strings.Repeat("w", 70_000), strings.Repeat("w", 64) + "…"},
		{strings.Repeat("é", 40), strings.Repeat("é", 32) + "…"}, // cut inside a rune: no broken UTF-8
	} {
		if got := clip(tc.in); got != tc.want {
			t.Errorf("clip(%d bytes) = %q, want %q", len(tc.in), got, tc.want)
		}
	}
}

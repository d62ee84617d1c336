package dlp

import (
	"strings"
	"testing"
)

// FuzzParseAnswer: any webhook answer is an error or a known action,
// never a panic.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{`{"action":"block"}`, `{"action":"redact","b":"x"}`, `{"action":"nope"}`, `[]`, ``, `{"action":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAnswer(strings.NewReader(s))
		if err != nil {
			return
		}
		if _, ok := strength[a.Action]; !ok {
			t.Fatalf("%q accepted as action %q", s, a.Action)
		}
	})
}

package jetstore

import (
	"fmt"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

// validToken reports whether t is one NATS subject token that is also a
// valid KV key part.
func validToken(t string) bool {
	if t == "" {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '=') {
			return false
		}
	}
	return true
}

func TestTok(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"alice": "alice", "p-1_x": "p-1_x", "d:alice:bob": "=ZDphbGljZTpib2I", "": "=", "a.b": "=YS5i", "=x": "=PXg", "👍": "=8J-RjQ",
	} {
		if got := tok(in); got != want {
			t.Errorf("tok(%q) = %q, want %q", in, got, want)
		}
		if back, err := untok(tok(in)); err != nil || back != in {
			t.Errorf("untok(tok(%q)) = %q, %v", in, back, err)
		}
	}
	if _, err := untok("=%%"); err == nil {
		t.Error("untok of bad base64 did not fail")
	}
}

// FuzzTok: any name makes one valid token that decodes back to it; any
// token either decodes or fails, never panics.
func FuzzTok(f *testing.F) {
	for _, s := range []string{"alice", "d:a:b", "", "=", "a.b.>", "*", "g:ops", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tk := tok(s)
		if !validToken(tk) {
			t.Fatalf("tok(%q) = %q is not a valid token", s, tk)
		}
		if back, err := untok(tk); err != nil || back != s {
			t.Fatalf("untok(tok(%q)) = %q, %v", s, back, err)
		}
		if back, err := untok(s); err == nil && !strings.HasPrefix(s, "=") && back != s {
			t.Fatalf("untok(%q) = %q", s, back)
		}
	})
}

func TestParseHead(t *testing.T) {
	t.Parallel()
	id := ulid.Make()
	h, err := parseHead(fmt.Appendf(nil, "42 %s", id))
	if err != nil || h.n != 42 || h.id != id {
		t.Fatalf("parseHead: %+v, %v", h, err)
	}
	if h, err := parseHead([]byte("7")); err != nil || h.n != 7 {
		t.Fatalf("parseHead(7): %+v, %v", h, err)
	}
	for _, bad := range []string{"", "x", "-1", "1 2 3", "1 notaulid"} {
		if _, err := parseHead([]byte(bad)); err == nil {
			t.Errorf("parseHead(%q) did not fail", bad)
		}
	}
}

// FuzzParseHead: a head record parses or fails, never panics, and what
// parses formats back to a record that parses the same.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{"1", "42 01ARZ3NDEKTSV4RRFFQ69G5FAV", "", "x y", "18446744073709551615"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := parseHead(p)
		if err != nil {
			return
		}
		again := fmt.Appendf(nil, "%d", h.n)
		if h.id != (ulid.ULID{}) {
			again = fmt.Appendf(again, " %s", h.id)
		}
		h2, err := parseHead(again)
		if err != nil || h2 != h {
			t.Fatalf("%q → %+v → %q → %+v, %v", p, h, again, h2, err)
		}
	})
}

// FuzzParseDedupe: a dedupe record parses or fails, never panics.
func FuzzParseDedupe(f *testing.F) {
	for _, s := range []string{"3 tern.ev.1.=ZDphOmI.7", "0 tern.ax.2.x.1", "", "x", "1 other.subject"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		us, subject, err := parseDedupe(p)
		if err != nil {
			return
		}
		if got := fmt.Sprintf("%d %s", us, subject); !strings.HasPrefix(subject, "tern.") || (got != string(p) && !strings.HasPrefix(string(p), "+") && !strings.HasPrefix(string(p), "0")) {
			t.Fatalf("%q parsed as %d %q", p, us, subject)
		}
	})
}

// FuzzParseSharedHead: a line of another node's heads notice parses or
// is skipped, never panics, and what parses prints back (appendHead) to a
// line that parses the same.
func FuzzParseSharedHead(f *testing.F) {
	for _, s := range []string{"tern.hc.3.=ZDphOmI 120 7 01ARZ3NDEKTSV4RRFFQ69G5FAV\n", "tern.hu.1.bob 9 3\n", "", "x 0 1", "a b c d e", "s 1 2 3 4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		subject, h, ok := parseSharedHead(p)
		if !ok {
			return
		}
		if h.seq == 0 || subject == "" {
			t.Fatalf("%q parsed as %q %+v", p, subject, h)
		}
		again := appendHead(nil, subject, h.seq, h.record())
		s2, h2, ok := parseSharedHead(again)
		if !ok || s2 != subject || h2 != h {
			t.Fatalf("%q → %q %+v → %q → %q %+v %v", p, subject, h, again, s2, h2, ok)
		}
	})
}

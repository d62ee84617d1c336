package compliance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"0": 0, "720h": 720 * time.Hour, "30d": 30 * 24 * time.Hour, "1m": time.Minute, " 90m ": 90 * time.Minute,
	} {
		if got, err := ParseRetention(in); err != nil || got != want {
			t.Errorf("%q = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "59s", "-1h", "1y", "d", "-3d", "36501d", "forever", "0s1"} {
		if _, err := ParseRetention(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestParseTimeAndQuery(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{
		"": 0, "1795777915562": 1795777915562, "2026-01-02": time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixMilli(),
		"2026-01-02T03:04:05.5+01:00": time.Date(2026, 1, 2, 2, 4, 5, 5e8, time.UTC).UnixMilli(),
	} {
		if got, err := ParseTime(in); err != nil || got != want {
			t.Errorf("%q = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-5", "0", "2026-13-01", "2026-01-02 03:04"} {
		if _, err := ParseTime(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	for _, cv := range []string{"d:alice:bob", "g:ops"} {
		if err := CheckConv(cv); err != nil {
			t.Errorf("%s: %v", cv, err)
		}
	}
	for _, cv := range []string{"", "alice", "d:bob:alice", "d:a:a", "g:", "g:Ops", "d:a:B", "x:a:b"} {
		if err := CheckConv(cv); err == nil {
			t.Errorf("%q accepted", cv)
		}
	}
}

func TestVerifyExport(t *testing.T) {
	t.Parallel()
	good := "{\"t\":\"msg\",\"b\":\"x\"}\n{\"t\":\"edit\",\"b\":\"y\"}\n{\"t\":\"manifest\",\"count\":2,\"sha256\":\"5d0c3b1a7d9ca9a4bd74a6b7a7c4c56deb78b5c0a15ffb0ad19bb3ec4d3e6b20\"}\n"
	// Compute the right hash rather than trusting a constant.
	var b bytes.Buffer
	b.WriteString("{\"t\":\"msg\",\"b\":\"x\"}\n{\"t\":\"edit\",\"b\":\"y\"}\n")
	m, err := VerifyExport(strings.NewReader(good))
	if err == nil {
		t.Fatalf("a wrong hash verified: %+v", m)
	}
	h := sha(b.Bytes())
	good = b.String() + `{"t":"manifest","count":2,"sha256":"` + h + "\"}\n"
	if m, err := VerifyExport(strings.NewReader(good)); err != nil || m.Count != 2 {
		t.Fatalf("verify: %+v %v", m, err)
	}
	// Written a byte at a time (as a stream arrives), and without the
	// final newline, it verifies the same.
	for _, in := range []string{good, strings.TrimSuffix(good, "\n")} {
		v := NewVerifier()
		for i := range len(in) {
			if _, err := v.Write([]byte{in[i]}); err != nil {
				t.Fatal(err)
			}
		}
		if m, err := v.Result(); err != nil || m.Count != 2 {
			t.Fatalf("byte by byte: %+v %v", m, err)
		}
	}
	for name, bad := range map[string]string{
		"no manifest":   b.String(),
		"line removed":  "{\"t\":\"msg\",\"b\":\"x\"}\n" + `{"t":"manifest","count":2,"sha256":"` + h + "\"}\n",
		"line edited":   strings.Replace(good, `"b":"x"`, `"b":"z"`, 1),
		"empty":         "",
		"count changed": strings.Replace(good, `"count":2`, `"count":3`, 1),
	} {
		if _, err := VerifyExport(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// FuzzParsers: retention, time and export parsing answer an error or a
// value in range, never a panic.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{"30d", "720h", "0", "2026-01-02", "1795777915562", "{\"t\":\"manifest\"}\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseRetention(s); err == nil && d != 0 && (d < MinRetention || d > MaxRetention) {
			t.Fatalf("%q → %v out of range", s, d)
		}
		if ms, err := ParseTime(s); err == nil && ms < 0 {
			t.Fatalf("%q → %d", s, ms)
		}
		_, _ = VerifyExport(strings.NewReader(s)) // error or manifest
		_ = CheckConv(s)
	})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

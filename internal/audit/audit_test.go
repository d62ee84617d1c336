package audit_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/tern-im/tern/internal/audit"
)

func open(t *testing.T, dir string, mod ...func(*audit.Options)) *audit.Log {
	t.Helper()
	o := audit.Options{Dir: dir, MaxFileSize: 4 << 10}
	for _, m := range mod {
		m(&o)
	}
	l, err := audit.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func logN(l *audit.Log, from, n int) {
	for i := from; i < from+n; i++ {
		l.Log(audit.Entry{Type: audit.AuthLogin, UID: fmt.Sprintf("u%d", i), DID: "p1", IP: "127.0.0.1", OK: i%3 != 0, Reason: "bad-credentials"})
	}
}

func lines(t *testing.T, files []string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ln := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
			if len(ln) > 0 {
				out = append(out, ln)
			}
		}
	}
	return out
}

// TestChainAcrossRestartAndRotation: lines written by three runs of the
// log, over files rotated by size, form one chain: the first line of each
// file links to the last of the previous one, and a restart goes on from
// the last line on disk.
func TestChainAcrossRestartAndRotation(t *testing.T) {
	dir := t.TempDir()
	total := 0
	for run := range 3 {
		l := open(t, dir)
		logN(l, total, 40)
		total += 40
		if err := l.Close(); err != nil {
			t.Fatalf("run %d: close: %v", run, err)
		}
	}
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("%d files after %d lines of ~170 bytes with 4KiB files: rotation did not happen", len(files), total)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 4<<10 {
			t.Errorf("%s is %d bytes, over the 4KiB limit", f, fi.Size())
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	r, err := audit.Verify(files, true)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if r.Lines != total {
		t.Fatalf("verified %d lines, want %d", r.Lines, total)
	}
	ls := lines(t, files)
	var first struct {
		TS, Type, UID, Prev string
		OK                  bool
	}
	if err := json.Unmarshal(ls[0], &first); err != nil {
		t.Fatal(err)
	}
	if first.Prev != audit.Genesis || first.Type != audit.AuthLogin || first.UID != "u0" || first.OK {
		t.Errorf("first line = %s", ls[0])
	}
	if _, err := time.Parse(audit.TimeFormat, first.TS); err != nil || !strings.HasSuffix(first.TS, "Z") || len(first.TS) != len("2006-01-02T15:04:05.000Z") {
		t.Errorf("ts %q is not RFC 3339 with ms in UTC: %v", first.TS, err)
	}
	// The first line of the second file links to the last of the first.
	f1 := lines(t, files[:1])
	f2 := lines(t, files[1:2])
	var second struct{ Prev string }
	if err := json.Unmarshal(f2[0], &second); err != nil {
		t.Fatal(err)
	}
	if second.Prev != audit.Hash(f1[len(f1)-1]) {
		t.Errorf("file 2 line 1 prev %s, want the hash of file 1's last line", second.Prev)
	}
	if r.Head != audit.Hash(ls[len(ls)-1]) {
		t.Errorf("head %s is not the hash of the last line", r.Head)
	}
}

// copyChain writes the lines into one file in a new directory.
func copyChain(t *testing.T, ls [][]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "copy.jsonl")
	if err := os.WriteFile(p, append(bytes.Join(ls, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVerifyTampered: an edited line breaks the chain at the next line
// (whose prev no longer matches), a removed line at the line that now
// follows the gap, a line that is no longer an audit line at itself, and
// a removed first line at the new first line.
func TestVerifyTampered(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, func(o *audit.Options) { o.MaxFileSize = 1 << 20 })
	logN(l, 0, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	orig := lines(t, files)
	if len(orig) != 10 {
		t.Fatalf("%d lines", len(orig))
	}
	clone := func() [][]byte {
		out := make([][]byte, len(orig))
		for i := range orig {
			out[i] = bytes.Clone(orig[i])
		}
		return out
	}
	cases := []struct {
		name   string
		tamper func([][]byte) [][]byte
		line   int
		says   string
	}{
		{"edited line 5", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"uid":"u4"`), []byte(`"uid":"u9"`), 1)
			return ls
		}, 6, "hash of line 5"},
		{"removed line 5", func(ls [][]byte) [][]byte { return append(ls[:4], ls[5:]...) }, 5, "hash of line 4"},
		{"garbled line 3", func(ls [][]byte) [][]byte { ls[2] = ls[2][:20]; return ls }, 3, "not an audit line"},
		{"removed first line", func(ls [][]byte) [][]byte { return ls[1:] }, 1, "does not start here"},
		{"swapped lines 7 and 8", func(ls [][]byte) [][]byte { ls[6], ls[7] = ls[7], ls[6]; return ls }, 7, "hash of line 6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := copyChain(t, c.tamper(clone()))
			_, err := audit.Verify([]string{p}, true)
			var b *audit.Break
			if !errors.As(err, &b) {
				t.Fatalf("verify = %v, want a Break", err)
			}
			if b.File != p || b.Line != c.line || !strings.Contains(b.Reason, c.says) {
				t.Errorf("break = %v, want %s:%d saying %q", b, p, c.line, c.says)
			}
		})
	}
	t.Run("untouched copy", func(t *testing.T) {
		if r, err := audit.Verify([]string{copyChain(t, clone())}, true); err != nil || r.Lines != 10 {
			t.Fatalf("verify = %+v, %v", r, err)
		}
	})
	t.Run("a later part alone is anchored, not whole", func(t *testing.T) {
		p := copyChain(t, clone()[3:])
		if r, err := audit.Verify([]string{p}, false); err != nil || r.Anchor != audit.Hash(orig[2]) {
			t.Fatalf("verify = %+v, %v", r, err)
		}
	})
}

// TestCountAggregates: counted entries with the same key in one window
// become one line with their number; other keys get their own line;
// the next window starts again.
func TestCountAggregates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		var out bytes.Buffer
		l := open(t, dir, func(o *audit.Options) { o.Stdout = &out })
		deny := audit.Entry{Type: audit.ACLDeny, UID: "bob", DID: "p1", Target: "im/u/alice/d/p1/in"}
		for range 5 {
			l.Count(deny)
		}
		other := deny
		other.Target = "im/u/carol/d/p1/in"
		l.Count(other)
		time.Sleep(time.Minute + time.Second) // the window ends (fake clock)
		synctest.Wait()
		l.Count(deny)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		files, err := audit.Files(dir)
		if err != nil {
			t.Fatal(err)
		}
		ls := lines(t, files)
		var got []string
		for _, ln := range ls {
			var x struct {
				Target string
				N      int
			}
			if err := json.Unmarshal(ln, &x); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s=%d", x.Target, x.N))
		}
		want := []string{"im/u/alice/d/p1/in=5", "im/u/carol/d/p1/in=1", "im/u/alice/d/p1/in=1"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("lines %v, want %v", got, want)
		}
		// The stdout copy is the same lines.
		sc := bufio.NewScanner(&out)
		i := 0
		for sc.Scan() {
			if i >= len(ls) || !bytes.Equal(sc.Bytes(), ls[i]) {
				t.Errorf("stdout line %d differs from the file", i+1)
			}
			i++
		}
		if i != len(ls) {
			t.Errorf("stdout has %d lines, file %d", i, len(ls))
		}
		if _, err := audit.Verify(files, true); err != nil {
			t.Error(err)
		}
	})
}

// TestResumeAfterEmptyFile: an empty newest file (a rotation cut short)
// links to the last line of the file before it.
func TestResumeAfterEmptyFile(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	logN(l, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A rotation that crashed right after creating the next file.
	if err := os.WriteFile(filepath.Join(dir, "audit-00000002.jsonl"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir)
	logN(l, 3, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := audit.Verify(files, true); err != nil || r.Lines != 5 {
		t.Fatalf("verify = %+v, %v", r, err)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	if _, err := audit.Open(audit.Options{Dir: t.TempDir(), MaxFileSize: 100}); err == nil {
		t.Error("MaxFileSize 100 accepted")
	}
	if _, err := audit.Open(audit.Options{MaxFileSize: 1 << 20}); err == nil {
		t.Error("empty Dir accepted")
	}
}

// FuzzVerify: any file content is verified or reported as a Break, never
// a panic; a chain the log wrote verifies.
func FuzzVerify(f *testing.F) {
	var chain bytes.Buffer
	prev := audit.Genesis
	for i := range 3 {
		b, err := audit.Marshal(audit.Entry{TS: time.Unix(int64(i), 0), Type: audit.Export, OK: true}, prev)
		if err != nil {
			f.Fatal(err)
		}
		chain.Write(append(b, '\n'))
		prev = audit.Hash(b)
	}
	f.Add(chain.Bytes())
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"ts":"x","type":"y","prev":"` + audit.Genesis + `"}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "f.jsonl")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := audit.Verify([]string{p}, true)
		var b *audit.Break
		if err != nil && !errors.As(err, &b) {
			t.Fatalf("verify: %v is neither nil nor a Break", err)
		}
		if err == nil && r.Lines > 0 && len(r.Head) != 64 {
			t.Fatalf("head %q", r.Head)
		}
	})
}

// TestClipsClientChosenFields: a 64 KiB user name or topic (client
// input) is cut to MaxField bytes on a rune boundary.
func TestClipsClientChosenFields(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 32<<10)
	b, err := audit.Marshal(audit.Entry{Type: audit.AuthLogin, UID: long, Target: long, Reason: "x"}, audit.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 1024 {
		t.Fatalf("line is %d bytes", len(b))
	}
	var l struct{ UID, Target string }
	if err := json.Unmarshal(b, &l); err != nil || len(l.UID) > audit.MaxField || !strings.HasSuffix(l.UID, "…") || !utf8.ValidString(l.UID) {
		t.Fatalf("uid %q %v", l.UID, err)
	}
}

// TestTornLastLine: a last line cut short (a crash mid-write) is ended at
// the next start, so new lines stand on their own, and verify names the
// cut line; the lines after it still link to it.
func TestTornLastLine(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, func(o *audit.Options) { o.MaxFileSize = 1 << 20 })
	logN(l, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := audit.Files(dir)
	f, err := os.OpenFile(files[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"ts":"2026-11-27T11:`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l = open(t, dir, func(o *audit.Options) { o.MaxFileSize = 1 << 20 })
	logN(l, 3, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ls := lines(t, files)
	if len(ls) != 6 {
		t.Fatalf("%d lines, want 3 + the cut one + 2", len(ls))
	}
	_, err = audit.Verify(files, true)
	var b *audit.Break
	if !errors.As(err, &b) || b.Line != 4 || !strings.Contains(b.Reason, "not an audit line") {
		t.Fatalf("verify = %v, want the cut line 4", err)
	}
	var fifth struct{ Prev string }
	if err := json.Unmarshal(ls[4], &fifth); err != nil || fifth.Prev != audit.Hash(ls[3]) {
		t.Fatalf("line 5 does not link to the cut line: %v", err)
	}
}

package filestest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/files"
)

// RunContent is the conformance suite of files.Content: newContent
// returns an empty implementation for each subtest (a shared one must
// remove an unused blob at once: no grace).
func RunContent(t *testing.T, newContent func(t *testing.T) files.Content) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	body := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	sum := func(b []byte) string {
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}

	t.Run("Chunked", func(t *testing.T) {
		c := newContent(t)
		want := body(10, 1)
		f := files.File{FID: "01CHUNKED", Owner: "alice", Size: 10, Chunk: 4, Created: t0}
		must(t, c.NewPart(f))
		must(t, c.WriteChunk(f, 2, want[8:]))
		have, err := c.Have(f)
		must(t, err)
		if !bytes.Equal(have, []byte{0, 0, 1}) {
			t.Fatalf("have = %v, want [0 0 1]", have)
		}
		must(t, c.WriteChunk(f, 0, want[:4]))
		must(t, c.WriteChunk(f, 1, want[4:8]))
		must(t, c.WriteChunk(f, 1, want[4:8])) // a resend
		if have, _ := c.Have(f); !bytes.Equal(have, []byte{1, 1, 1}) {
			t.Fatalf("have = %v, want all", have)
		}
		wantPart(t, c, f, want)
		must(t, c.Commit(f, sum(want)))
		wantBlob(t, c, sum(want), want)
		must(t, c.RemovePart(f)) // gone already: fine
	})

	t.Run("ClearChunks", func(t *testing.T) {
		c := newContent(t)
		f := files.File{FID: "01CLEAR", Owner: "alice", Size: 8, Chunk: 4, Created: t0}
		must(t, c.NewPart(f))
		must(t, c.WriteChunk(f, 0, body(4, 2)))
		must(t, c.WriteChunk(f, 1, body(4, 3)))
		must(t, c.ClearChunks(f))
		have, err := c.Have(f)
		must(t, err)
		if !bytes.Equal(have, []byte{0, 0}) {
			t.Fatalf("have after clear = %v", have)
		}
		must(t, c.WriteChunk(f, 1, body(4, 4))) // stored again, with new bytes
		must(t, c.WriteChunk(f, 0, body(4, 5)))
		wantPart(t, c, f, append(body(4, 5), body(4, 4)...))
		must(t, c.RemovePart(f))
	})

	t.Run("InOrder", func(t *testing.T) {
		c := newContent(t)
		const size = 700 << 10 // several pieces of a shared store
		want := body(size, 9)
		f := files.File{FID: "01INORDER", Owner: "alice", Size: size, Created: t0}
		must(t, c.NewPart(f))
		if n, err := c.Appended(f); err != nil || n != 0 {
			t.Fatalf("appended at start = %d, %v", n, err)
		}
		n, err := c.Append(f, 0, bytes.NewReader(want[:300<<10]), size)
		if err != nil || n != 300<<10 {
			t.Fatalf("append = %d, %v", n, err)
		}
		if _, err := c.Append(f, 10, bytes.NewReader(want[10:20]), size-10); !errors.Is(err, files.ErrOffset) {
			t.Fatalf("append at a wrong offset: %v, want ErrOffset", err)
		}
		// A cut connection: the bytes that arrived count.
		cut := io.MultiReader(bytes.NewReader(want[300<<10:400<<10]), failing{})
		n, err = c.Append(f, 300<<10, cut, size-300<<10)
		if err == nil || n != 100<<10 {
			t.Fatalf("cut append = %d, %v; want 102400 and the read error", n, err)
		}
		if got, err := c.Appended(f); err != nil || got != 400<<10 {
			t.Fatalf("appended after the cut = %d, %v", got, err)
		}
		// At most max bytes are taken.
		n, err = c.Append(f, 400<<10, bytes.NewReader(append(want[400<<10:], "extra"...)), size-400<<10)
		if err != nil || n != size-400<<10 {
			t.Fatalf("last append = %d, %v", n, err)
		}
		wantPart(t, c, f, want)
		must(t, c.Commit(f, sum(want)))
		wantBlob(t, c, sum(want), want)
	})

	t.Run("SameContentTwice", func(t *testing.T) {
		c := newContent(t)
		want := body(5, 7)
		h := sum(want)
		for _, fid := range []string{"01FIRST", "01SECOND"} {
			f := files.File{FID: fid, Owner: "alice", Size: 5, Created: t0}
			must(t, c.NewPart(f))
			if _, err := c.Append(f, 0, bytes.NewReader(want), 5); err != nil {
				t.Fatal(err)
			}
			must(t, c.Commit(f, h))
			wantBlob(t, c, h, want)
		}
		must(t, c.RemoveBlob(h))
		if _, err := c.OpenBlob(h); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("open removed blob: %v, want ErrNotFound", err)
		}
		must(t, c.RemoveBlob(h)) // absent: fine
	})
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func wantPart(t *testing.T, c files.Content, f files.File, want []byte) {
	t.Helper()
	r, err := c.OpenPart(f)
	must(t, err)
	got, err := io.ReadAll(r)
	must(t, errors.Join(err, r.Close()))
	if !bytes.Equal(got, want) {
		t.Fatalf("part %s: %d bytes, want %d (equal: %v)", f.FID, len(got), len(want), bytes.Equal(got, want))
	}
}

func wantBlob(t *testing.T, c files.Content, h string, want []byte) {
	t.Helper()
	b, err := c.OpenBlob(h)
	must(t, err)
	defer b.Close()
	got, err := io.ReadAll(b)
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Fatalf("blob %s: %d bytes, want %d", h[:8], len(got), len(want))
	}
	// Ranges: seek and read at an offset.
	if len(want) > 3 {
		buf := make([]byte, 2)
		if _, err := b.ReadAt(buf, 2); err != nil || !bytes.Equal(buf, want[2:4]) {
			t.Fatalf("ReadAt = %v, %v; want %v", buf, err, want[2:4])
		}
		if _, err := b.Seek(1, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf); err != nil || !bytes.Equal(buf, want[1:3]) {
			t.Fatalf("read after seek = %v, %v", buf, err)
		}
	}
}

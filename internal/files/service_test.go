package files_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/files/filestest"
)

func newService(t *testing.T, mod func(*files.Options)) (*files.Service, *filestest.Mem) {
	t.Helper()
	m := filestest.NewMem()
	o := files.Options{Dir: t.TempDir(), Meta: m, MaxSize: 1 << 20, Quota: 4 << 20, Expiry: 24 * time.Hour, MaxPixels: 4_000_000}
	if mod != nil {
		mod(&o)
	}
	s, err := files.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s, m
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	seed := uint32(1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			seed = seed*1664525 + 1013904223 // noise: the PNG does not compress away
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(seed >> 24), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bombPNG is a valid PNG whose header claims w×h pixels: decoding it
// would allocate w×h×4 bytes before failing.
func bombPNG(t testing.TB, w, h uint32) []byte {
	b := pngBytes(t, 1, 1)
	// IHDR data starts at 16: width, height (4 bytes each); CRC after 13.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func chunks(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(size, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

// upload puts and sends every chunk of content, then commits.
func upload(t *testing.T, s *files.Service, uid string, content []byte, chunk int) files.File {
	t.Helper()
	f, _, err := s.Put(uid, files.PutRequest{Name: "x", Size: int64(len(content)), Hash: sum(content)}, chunk)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range chunks(content, chunk) {
		if err := s.WriteChunk(uid, f.FID, i, c); err != nil {
			t.Fatal(err)
		}
	}
	f, _, err = s.Commit(uid, f.FID)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestChunkedUpload(t *testing.T) {
	t.Parallel()
	s, m := newService(t, nil)
	content := pngBytes(t, 40, 30)
	const chunk = 256
	parts := chunks(content, chunk)
	f, have, err := s.Put("alice", files.PutRequest{Name: "meter.png", Size: int64(len(content)), CT: "text/lies", Hash: sum(content)}, chunk)
	if err != nil || len(have) != 0 || f.Chunk != chunk || f.Chunks() != len(parts) {
		t.Fatalf("put = %+v %v %v", f, have, err)
	}
	// Every kind of bad chunk.
	wantErr(t, s.WriteChunk("alice", f.FID, len(parts), []byte("x")), files.ErrPastEnd)
	wantErr(t, s.WriteChunk("alice", f.FID, 0, parts[0][:10]), files.ErrChunkSize)
	wantErr(t, s.WriteChunk("alice", f.FID, len(parts)-1, make([]byte, len(parts[len(parts)-1])+1)), files.ErrChunkSize)
	wantErr(t, s.WriteChunk("bob", f.FID, 0, parts[0]), files.ErrUnknownFile)
	wantErr(t, s.WriteChunk("alice", "01J9Z3K8Q4W6X2M7N5P0R8T1VB", 0, parts[0]), files.ErrUnknownFile)

	// Half the chunks, out of order; the commit says what is missing.
	for _, i := range []int{3, 0, 1} {
		if err := s.WriteChunk("alice", f.FID, i, parts[i]); err != nil {
			t.Fatal(err)
		}
	}
	_, have, err = s.Commit("alice", f.FID)
	wantErr(t, err, files.ErrIncomplete)
	if want := []files.Range{{0, 1}, {3, 3}}; !slices.Equal(have, want) {
		t.Fatalf("have = %v, want %v", have, want)
	}
	// A second put of the same content resumes the same upload.
	f2, have2, err := s.Put("alice", files.PutRequest{Name: "again", Size: int64(len(content)), Hash: sum(content)}, 999)
	if err != nil || f2.FID != f.FID || f2.Chunk != chunk || !slices.Equal(have2, have) {
		t.Fatalf("resume put = %+v %v %v", f2, have2, err)
	}
	for _, i := range files.Missing(have2, f.Chunks()) {
		if err := s.WriteChunk("alice", f.FID, i, parts[i]); err != nil {
			t.Fatal(err)
		}
	}
	f, have, err = s.Commit("alice", f.FID)
	if err != nil || !f.IsCommitted() || f.CT != "image/png" || f.W != 40 || f.H != 30 || !slices.Equal(have, []files.Range{{0, len(parts) - 1}}) {
		t.Fatalf("commit = %+v %v %v", f, have, err)
	}
	// Content on disk, upload files gone; a late chunk is acknowledged.
	r, _, err := s.Open("alice", f.FID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, content) {
		t.Fatal("stored content differs")
	}
	if err := s.WriteChunk("alice", f.FID, 0, parts[0]); err != nil {
		t.Fatalf("chunk after commit: %v", err)
	}
	if _, _, err := s.Open("bob", f.FID); !errors.Is(err, files.ErrUnknownFile) {
		t.Fatalf("bob opens alice's file: %v", err)
	}
	// Stat with a device of another chunk size; the quota counts the file.
	st, have, err := s.Stat("alice", f.FID, 100)
	if err != nil || st.Chunk != chunk || len(have) != 1 {
		t.Fatalf("stat = %+v %v %v", st, have, err)
	}
	if u, _ := m.Usage("alice"); u != int64(len(content)) {
		t.Fatalf("usage = %d", u)
	}
}

func TestHashMismatchStartsOver(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, nil)
	content := []byte("hello, world")
	f, _, err := s.Put("alice", files.PutRequest{Size: int64(len(content)), Hash: sum([]byte("something else"))}, 8)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range chunks(content, 8) {
		if err := s.WriteChunk("alice", f.FID, i, c); err != nil {
			t.Fatal(err)
		}
	}
	_, have, err := s.Commit("alice", f.FID)
	wantErr(t, err, files.ErrHashMismatch)
	if len(have) != 0 {
		t.Fatalf("have after mismatch = %v", have)
	}
	if _, have, _ := s.Stat("alice", f.FID, 8); len(have) != 0 {
		t.Fatalf("stat have after mismatch = %v", have)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, func(o *files.Options) { o.MaxSize = 1000; o.Quota = 1500 })
	h := sum(nil)
	_, _, err := s.Put("alice", files.PutRequest{Size: 1001, Hash: h}, 100)
	wantErr(t, err, files.ErrTooLarge)
	if _, _, err := s.Put("alice", files.PutRequest{Size: 1000, Hash: strings.Repeat("a", 64)}, 100); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Put("alice", files.PutRequest{Size: 501, Hash: strings.Repeat("b", 64)}, 100)
	wantErr(t, err, files.ErrOverQuota)
	_, err = s.CreateUpload("alice", 501, "x", "")
	wantErr(t, err, files.ErrOverQuota)
	if _, _, err := s.Put("bob", files.PutRequest{Size: 501, Hash: strings.Repeat("b", 64)}, 100); err != nil {
		t.Fatalf("bob has his own quota: %v", err)
	}
	for _, bad := range []string{"", "ABC", strings.Repeat("A", 64), strings.Repeat("g", 64)} {
		_, _, err := s.Put("alice", files.PutRequest{Size: 1, Hash: bad}, 100)
		wantErr(t, err, files.ErrBadHash)
	}
	_, _, err = s.Put("alice", files.PutRequest{Size: -1, Hash: h}, 100)
	wantErr(t, err, files.ErrBadSize)
}

func TestInOrderUpload(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, nil)
	content := bytes.Repeat([]byte("0123456789"), 100)
	f, err := s.CreateUpload("alice", int64(len(content)), "a.txt", "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	// A reader that fails midway, like a cut connection: what arrived counts.
	n, err := s.Append("alice", f.FID, 0, io.MultiReader(bytes.NewReader(content[:300]), errReader{}))
	if n != 300 || err == nil {
		t.Fatalf("cut append = %d, %v", n, err)
	}
	if _, off, err := s.Upload("alice", f.FID); off != 300 || err != nil {
		t.Fatalf("offset = %d, %v", off, err)
	}
	_, err = s.Append("alice", f.FID, 200, bytes.NewReader(content[200:]))
	wantErr(t, err, files.ErrOffset)
	_, err = s.FinishUpload("alice", f.FID)
	wantErr(t, err, files.ErrIncomplete)
	// The rest, and a few bytes too many that are not taken.
	if n, err := s.Append("alice", f.FID, 300, bytes.NewReader(append(content[300:], "extra"...))); n != 700 || err != nil {
		t.Fatalf("append rest = %d, %v", n, err)
	}
	f, err = s.FinishUpload("alice", f.FID)
	if err != nil || f.Hash != sum(content) || f.CT != "text/plain; charset=utf-8" {
		t.Fatalf("finish = %+v, %v", f, err)
	}
	wantErr(t, s.Abort("alice", f.FID), files.ErrCommitted)
	g, err := s.CreateUpload("alice", 10, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Abort("alice", g.FID); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Upload("alice", g.FID)
	wantErr(t, err, files.ErrUnknownFile)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestThumbnailOnce(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, nil)
	f := upload(t, s, "alice", pngBytes(t, 1000, 500), 4096)
	for range 3 {
		r, _, err := s.Thumb("alice", f.FID)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != 320 || b.Dy() != 160 {
			t.Fatalf("thumbnail is %v", b)
		}
	}
	if n := s.Stats().ThumbsMade; n != 1 {
		t.Fatalf("thumbnails made = %d, want 1", n)
	}
	txt := upload(t, s, "alice", []byte("plain text"), 64)
	if _, _, err := s.Thumb("alice", txt.FID); !errors.Is(err, files.ErrNotImage) {
		t.Fatalf("thumb of text: %v", err)
	}
}

func TestDecompressionBomb(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, nil)
	bomb := bombPNG(t, 100_000, 100_000) // 10^10 pixels: 40 GB decoded
	f := upload(t, s, "alice", bomb, 4096)
	if f.CT != "image/png" || f.W != 100_000 || f.H != 100_000 {
		t.Fatalf("bomb committed as %+v", f)
	}
	if _, _, err := s.Thumb("alice", f.FID); !errors.Is(err, files.ErrTooManyPixels) {
		t.Fatalf("thumb of a bomb: %v", err)
	}
	if n := s.Stats().ThumbsMade; n != 0 {
		t.Fatalf("thumbnails made = %d", n)
	}
}

func TestRefsRemoveBlob(t *testing.T) {
	t.Parallel()
	s, m := newService(t, nil)
	content := []byte("shared content")
	a := upload(t, s, "alice", content, 64)
	b := upload(t, s, "bob", content, 64) // same blob, deduplicated
	blob := s.BlobPath(a.Hash)
	if err := s.AddRef(a.FID, "m:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRef(a.FID, "m:2"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRef(b.FID, "m:3"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveRef(a.FID, "m:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(a.FID); err != nil {
		t.Fatalf("file gone with a reference left: %v", err)
	}
	if err := s.RemoveRef(a.FID, "m:2"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(a.FID); !errors.Is(err, files.ErrNotFound) {
		t.Fatalf("file kept after its last reference: %v", err)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("blob removed while bob's file uses it: %v", err)
	}
	if err := s.RemoveRef(b.FID, "m:3"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(blob); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("blob kept after the last file went: %v", err)
	}
	if u, _ := m.Usage("alice"); u != 0 {
		t.Fatalf("alice's usage = %d", u)
	}
	wantErr(t, s.AddRef(a.FID, "m:4"), files.ErrUnknownFile)
}

// TestCollector runs the collector goroutine on a fake clock: an upload
// left uncommitted and a file never attached are removed after the
// expiry; an attached file stays.
func TestCollector(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		s, m := newService(t, func(o *files.Options) { o.Dir = dir; o.SweepEvery = time.Hour })
		s.Start()
		defer s.Stop()
		content := []byte("kept")
		kept := upload(t, s, "alice", content, 64)
		if err := s.AddRef(kept.FID, "m:1"); err != nil {
			t.Fatal(err)
		}
		unattached := upload(t, s, "alice", []byte("never attached"), 64)
		half, _, err := s.Put("alice", files.PutRequest{Size: 100, Hash: sum(make([]byte, 100))}, 64)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteChunk("alice", half.FID, 0, make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(23 * time.Hour) // fake time: the collector has run 23 times
		synctest.Wait()
		if _, err := m.Get(half.FID); err != nil {
			t.Fatalf("upload collected before its expiry: %v", err)
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		for _, fid := range []string{half.FID, unattached.FID} {
			if _, err := m.Get(fid); !errors.Is(err, files.ErrNotFound) {
				t.Fatalf("%s not collected: %v", fid, err)
			}
		}
		if _, err := m.Get(kept.FID); err != nil {
			t.Fatalf("attached file collected: %v", err)
		}
		left, _ := filepath.Glob(filepath.Join(dir, "up", "*"))
		if len(left) != 0 {
			t.Fatalf("upload files left: %v", left)
		}
		if u, _ := m.Usage("alice"); u != int64(len(content)) {
			t.Fatalf("usage = %d, want %d", u, len(content))
		}
		if n := s.Stats().Collected; n != 2 {
			t.Fatalf("collected = %d, want 2", n)
		}
	})
}

// TestDiskLow: below the disk's free-space reserve, no upload takes a
// byte (507); chunks of an upload started before are refused too.
func TestDiskLow(t *testing.T) {
	t.Parallel()
	var low atomic.Bool
	s, _ := newService(t, func(o *files.Options) { o.DiskLow = low.Load })
	content := []byte("0123456789")
	f, _, err := s.Put("alice", files.PutRequest{Size: 10, Hash: sum(content)}, 8)
	if err != nil {
		t.Fatal(err)
	}
	tus, err := s.CreateUpload("alice", 10, "", "")
	if err != nil {
		t.Fatal(err)
	}
	low.Store(true)
	wantErr(t, s.WriteChunk("alice", f.FID, 0, content[:8]), files.ErrDiskFull)
	_, _, err = s.Put("alice", files.PutRequest{Size: 1, Hash: sum([]byte("x"))}, 8)
	wantErr(t, err, files.ErrDiskFull)
	_, err = s.CreateUpload("alice", 1, "", "")
	wantErr(t, err, files.ErrDiskFull)
	_, err = s.Append("alice", tus.FID, 0, bytes.NewReader(content))
	wantErr(t, err, files.ErrDiskFull)
	low.Store(false)
	if err := s.WriteChunk("alice", f.FID, 0, content[:8]); err != nil {
		t.Fatal(err)
	}
}

// access is a files.Access whose dead references are listed.
type access struct{ dead map[string]bool }

func (a access) MayRead(string, []string) (bool, error) { return false, nil }
func (a access) Live(ref string) (bool, error)          { return !a.dead[ref], nil }

// TestCollectDeadRefs: the collector drops references that no longer
// stand (a disappearing message expired) and files that go with them.
func TestCollectDeadRefs(t *testing.T) {
	t.Parallel()
	s, m := newService(t, nil)
	s.SetAccess(access{dead: map[string]bool{"m:gone": true}})
	only := upload(t, s, "alice", []byte("only a dead reference"), 64)
	both := upload(t, s, "alice", []byte("a dead and a live reference"), 64)
	for _, r := range []struct{ fid, ref string }{{only.FID, "m:gone"}, {both.FID, "m:gone"}, {both.FID, "m:here"}} {
		if err := s.AddRef(r.fid, r.ref); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Collect(time.Now())
	if err != nil || n != 1 {
		t.Fatalf("collect = %d, %v; want the file with only a dead reference", n, err)
	}
	if _, err := m.Get(only.FID); !errors.Is(err, files.ErrNotFound) {
		t.Fatalf("file with a dead reference kept: %v", err)
	}
	if refs, _ := m.Refs(both.FID); !slices.Equal(refs, []string{"m:here"}) {
		t.Fatalf("refs of the other file = %v", refs)
	}
}

// TestConcurrentUploadSameFile: two devices of one user upload the same
// content at once (same h: the same upload), chunks interleaved and
// duplicated, and both commit: one file, intact.
func TestConcurrentUploadSameFile(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, nil)
	content := pngBytes(t, 60, 60)
	parts := chunks(content, 128)
	put := func() files.File {
		f, _, err := s.Put("alice", files.PutRequest{Size: int64(len(content)), Hash: sum(content)}, 128)
		if err != nil {
			t.Error(err)
		}
		return f
	}
	a, b := put(), put()
	if a.FID != b.FID {
		t.Fatalf("two uploads of the same content: %s, %s", a.FID, b.FID)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(parts)+2)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range parts {
				j := (i + w*len(parts)/4) % len(parts)
				if err := s.WriteChunk("alice", a.FID, j, parts[j]); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	results := make([]files.File, 2)
	for k := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, _, err := s.Commit("alice", a.FID)
			if err != nil {
				errs <- err
			}
			results[k] = f
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if results[0].Hash != sum(content) || results[1].Hash != sum(content) || !results[0].IsCommitted() {
		t.Fatalf("commits = %+v", results)
	}
	r, _, err := s.Open("alice", a.FID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, _ := io.ReadAll(r)
	if !bytes.Equal(got, content) {
		t.Fatal("content differs")
	}
}

// TestThumbnailFormats: JPEG, PNG (with transparency) and GIF images get
// a JPEG thumbnail with the longest side 320, proportions kept; a small
// image keeps its size.
func TestThumbnailFormats(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, nil)
	src := image.NewNRGBA(image.Rect(0, 0, 400, 1000))
	for y := 0; y < 1000; y++ {
		for x := 0; x < 400; x++ {
			src.Set(x, y, color.NRGBA{uint8(x), uint8(y), 200, uint8(x % 256)})
		}
	}
	enc := map[string]func(io.Writer) error{
		"image/png":  func(w io.Writer) error { return png.Encode(w, src) },
		"image/jpeg": func(w io.Writer) error { return jpeg.Encode(w, src, nil) },
		"image/gif":  func(w io.Writer) error { return gif.Encode(w, src, nil) },
	}
	for ct, encode := range enc {
		var buf bytes.Buffer
		if err := encode(&buf); err != nil {
			t.Fatal(err)
		}
		f := upload(t, s, "alice", buf.Bytes(), 4096)
		if f.CT != ct || f.W != 400 || f.H != 1000 {
			t.Fatalf("%s committed as %+v", ct, f)
		}
		r, _, err := s.Thumb("alice", f.FID)
		if err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
		img, err := jpeg.Decode(r)
		r.Close()
		if err != nil {
			t.Fatalf("%s thumbnail: %v", ct, err)
		}
		if b := img.Bounds(); b.Dx() != 128 || b.Dy() != 320 {
			t.Fatalf("%s thumbnail is %v, want 128x320", ct, b)
		}
	}
	small := upload(t, s, "alice", pngBytes(t, 30, 20), 4096)
	r, _, err := s.Thumb("alice", small.FID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if cfg, err := jpeg.DecodeConfig(r); err != nil || cfg.Width != 30 || cfg.Height != 20 {
		t.Fatalf("small image thumbnail: %+v, %v", cfg, err)
	}
}

// TestThumbnailWebP: a WebP (testdata, made with cwebp) is sniffed, sized
// and thumbnailed through golang.org/x/image/webp.
func TestThumbnailWebP(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, nil)
	b, err := os.ReadFile(filepath.Join("testdata", "200x100.webp"))
	if err != nil {
		t.Fatal(err)
	}
	f := upload(t, s, "alice", b, 4096)
	if f.CT != "image/webp" || f.W != 200 || f.H != 100 {
		t.Fatalf("webp committed as %+v", f)
	}
	r, _, err := s.Thumb("alice", f.FID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if cfg, err := jpeg.DecodeConfig(r); err != nil || cfg.Width != 200 || cfg.Height != 100 {
		t.Fatalf("webp thumbnail: %+v, %v", cfg, err)
	}
}

package jetstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/files/filestest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openFiles opens the file store on its own single JetStream node.
func openFiles(t testing.TB, o FilesOptions) *Files {
	t.Helper()
	s := openOn(t, startNode(t), 1, o.Now, nil)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := OpenFiles(ctx, s, o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFileMeta runs the files.Meta conformance suite (the one Badger
// passes) against the bucket tern-files.
func TestFileMeta(t *testing.T) {
	t.Parallel()
	filestest.Run(t, func(t *testing.T) files.Meta { return openFiles(t, FilesOptions{}).Meta() })
}

// TestFileContent runs the files.Content conformance suite (the one the
// disk passes) against TERN_UP and the object store.
func TestFileContent(t *testing.T) {
	t.Parallel()
	filestest.RunContent(t, func(t *testing.T) files.Content {
		return openFiles(t, FilesOptions{Grace: time.Nanosecond})
	})
}

func (f *Files) objects(t *testing.T) []string {
	t.Helper()
	objs, err := f.obs.List(context.Background())
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	return names
}

// TestFilesServiceOnJetStream drives the file service over JetStream:
// a tus-style upload, its blob shared by a second upload of the same
// content, then the collector (expired, unreferenced) removing both
// files, and the object with the last one only after the grace a
// commit's touch gives it.
func TestFilesServiceOnJetStream(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	jf := openFiles(t, FilesOptions{Now: clk.Now, Grace: time.Hour})
	dir := jf.o.Dir
	s, err := files.New(files.Options{Dir: dir, Meta: jf.Meta(), Content: jf, MaxSize: 1 << 20,
		Expiry: time.Hour, MaxPixels: 1 << 20, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	upload := func(body []byte) files.File {
		t.Helper()
		f, err := s.CreateUpload("alice", int64(len(body)), "a.bin", "")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Append("alice", f.FID, 0, bytes.NewReader(body)); err != nil || n != int64(len(body)) {
			t.Fatalf("append = %d, %v", n, err)
		}
		if f, err = s.FinishUpload("alice", f.FID); err != nil {
			t.Fatal(err)
		}
		return f
	}
	body := bytes.Repeat([]byte("tern "), 70_000) // 350 kB: two pieces
	f1 := upload(body)
	f2 := upload(body)
	if f1.Hash != f2.Hash || len(jf.objects(t)) != 1 {
		t.Fatalf("same content twice: hashes %s %s, objects %v; want one object", f1.Hash, f2.Hash, jf.objects(t))
	}
	r, _, err := s.Open("alice", f2.FID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err := errors.Join(err, r.Close()); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	if u, err := jf.Meta().Usage("alice"); err != nil || u != 2*int64(len(body)) {
		t.Fatalf("usage = %d, %v", u, err)
	}

	// An hour later neither file was attached: both go, and the object
	// with the last one (the commits' touch is older than the grace).
	clk.Add(time.Hour + time.Second)
	if n, err := s.Collect(clk.Now()); err != nil || n != 2 {
		t.Fatalf("collect = %d, %v; want 2", n, err)
	}
	if _, _, err := s.Open("alice", f1.FID); !errors.Is(err, files.ErrUnknownFile) {
		t.Fatalf("open a collected file: %v", err)
	}
	if u, _ := jf.Meta().Usage("alice"); u != 0 {
		t.Fatalf("usage after collect = %d", u)
	}
	// The copy this node kept is pruned with its last file.
	if n, err := jf.Prune(jf.Meta().BlobInUse); err != nil || n != 0 {
		t.Fatalf("prune = %d, %v (the removal dropped the copy already)", n, err)
	}
	if objs := jf.objects(t); len(objs) != 0 {
		t.Fatalf("objects after collect = %v, want none", objs)
	}
}

// TestBlobGrace: an unused blob whose record a commit touched within the
// grace stays (a commit on another node may be about to record its
// file); the collector's sweep removes it after the grace.
func TestBlobGrace(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	jf := openFiles(t, FilesOptions{Now: clk.Now, Grace: 10 * time.Minute})
	body := []byte("hello, cluster")
	fl := files.File{FID: "01GRACE", Owner: "alice", Size: int64(len(body))}
	if _, err := jf.Append(fl, 0, bytes.NewReader(body), fl.Size); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	if err := jf.Commit(fl, h); err != nil {
		t.Fatal(err)
	}
	if err := jf.RemoveBlob(h); err != nil {
		t.Fatal(err)
	}
	if len(jf.objects(t)) != 1 {
		t.Fatal("a blob touched within the grace was removed")
	}
	clk.Add(9 * time.Minute)
	if n, err := jf.Sweep(clk.Now(), nil); err != nil || n != 0 {
		t.Fatalf("sweep within the grace = %d, %v", n, err)
	}
	clk.Add(2 * time.Minute)
	if n, err := jf.Sweep(clk.Now(), nil); err != nil || n != 1 {
		t.Fatalf("sweep after the grace = %d, %v; want 1", n, err)
	}
	if objs := jf.objects(t); len(objs) != 0 {
		t.Fatalf("objects = %v, want none", objs)
	}
	if _, err := jf.OpenBlob(h); !errors.Is(err, files.ErrNotFound) {
		t.Fatalf("open a swept blob: %v", err)
	}
}

// TestCollectorTurn: one node at a time holds the collector's turn; the
// holder renews it; when it stops renewing, another takes it after ttl.
func TestCollectorTurn(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	jf := openFiles(t, FilesOptions{Now: clk.Now})
	n1, n2 := jf.Turn("n1", time.Minute), jf.Turn("n2", time.Minute)
	turn := func(f func() (bool, error), want bool, what string) {
		t.Helper()
		got, err := f()
		if err != nil || got != want {
			t.Fatalf("%s: %v, %v; want %v", what, got, err, want)
		}
	}
	turn(n1, true, "n1 first")
	turn(n2, false, "n2 while n1 holds it")
	clk.Add(50 * time.Second)
	turn(n1, true, "n1 renews")
	clk.Add(50 * time.Second)
	turn(n2, false, "n2 within the renewed turn")
	clk.Add(11 * time.Second) // n1 stopped renewing a minute ago
	turn(n2, true, "n2 after n1's turn ran out")
	turn(n1, false, "n1 back")
}

// FuzzParsePend: a pending key is read back as written, and any other
// string is an error or a key, never a panic.
func FuzzParsePend(f *testing.F) {
	f.Add(int64(1767323045000000000), "01JDX0000000000000000000AB")
	f.Add(int64(0), "a.b*>")
	f.Add(int64(-5), "")
	f.Fuzz(func(t *testing.T, ns int64, fid string) {
		fl := files.File{FID: fid, Created: time.Unix(0, ns)}
		since, got, err := parsePend(pendKey(&fl))
		if err != nil || got != fid || since != uint64(fl.Since().UnixNano()) {
			t.Fatalf("parsePend(pendKey(%d, %q)) = %d, %q, %v", ns, fid, since, got, err)
		}
		// Junk: an error, or a key that starts like one; never a panic.
		if _, _, err := parsePend(fid); err == nil && !strings.HasPrefix(fid, "p.") {
			t.Fatalf("parsePend(%q) accepted a key that is not one", fid)
		}
	})
}

// TestFullStorage: JetStream refusing a write for lack of room (here a
// stream's byte limit; the server's max_file_store answers the same way)
// is files.ErrDiskFull (507) at once, and what was stored before stays.
func TestFullStorage(t *testing.T) {
	t.Parallel()
	jf := openFiles(t, FilesOptions{})
	cfg := uploadConfig(1)
	cfg.MaxBytes = 300 << 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := jf.s.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte{7}, 600<<10)
	fl := files.File{FID: "01FULL", Owner: "alice", Size: int64(len(body))}
	start := time.Now()
	n, err := jf.Append(fl, 0, bytes.NewReader(body), fl.Size)
	if !errors.Is(err, files.ErrDiskFull) || n != pieceSize {
		t.Fatalf("append past the limit = %d, %v; want %d stored and ErrDiskFull", n, err, pieceSize)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a full store was retried for %v", d)
	}
	if got, err := jf.Appended(fl); err != nil || got != pieceSize {
		t.Fatalf("appended = %d, %v", got, err)
	}
	chunked := files.File{FID: "01FULLC", Owner: "alice", Size: 200 << 10, Chunk: 100 << 10}
	if err := jf.WriteChunk(chunked, 0, body[:100<<10]); !errors.Is(err, files.ErrDiskFull) {
		t.Fatalf("chunk past the limit: %v, want ErrDiskFull", err)
	}
}

package files

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
)

// Defaults of Options fields left zero.
const (
	DefaultThumbSide = 320
	DefaultSweep     = time.Hour
)

// Access is what the file store needs from the side that holds
// references (the IM service): who besides the uploader may read a
// committed file (PROTOCOL §11: members of a conversation holding a
// message that attaches it, inside their membership window), from the
// file's references; and whether a reference still stands (a message that
// expired or was trimmed without telling, a stale pin: the collector drops
// those references).
type Access interface {
	MayRead(uid string, refs []string) (bool, error)
	Live(ref string) (bool, error)
}

// Options configures a Service. Dir and Meta are required.
type Options struct {
	// Dir is the root of the file tree, {data}/files: the content on a
	// single node, the thumbnails (and a cluster's cached blobs) always.
	Dir  string
	Meta Meta
	// Content keeps the bytes; nil means Disk under Dir.
	Content Content
	// Turn, if set, reports whether this node runs the collector now (in
	// a cluster one node at a time does); nil means always.
	Turn func() (bool, error)
	// MaxSize is the largest file in bytes (413 beyond).
	MaxSize int64
	// Quota is the bytes each user may have stored, uploads in progress
	// included (413 beyond). 0 means no quota.
	Quota int64
	// Expiry is how long an upload may stay uncommitted, and a committed
	// file unreferenced, before the collector removes it.
	Expiry time.Duration
	// SweepEvery is how often the collector runs (DefaultSweep if 0).
	SweepEvery time.Duration
	// MaxPixels bounds the images that are decoded for thumbnails.
	MaxPixels int64
	// ThumbSide is the longest side of a thumbnail (DefaultThumbSide if 0).
	ThumbSide int
	// Access, if set, lets users other than the uploader read files
	// (SetAccess sets it later).
	Access Access
	// DiskLow, if set, reports that the data dir's disk is below its
	// free-space reserve: uploads are refused (507) until it is not.
	DiskLow func() bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Service is the file store. It is safe for concurrent use.
type Service struct {
	o    Options
	seed maphash.Seed
	// up serialises writes to one upload (striped by fid); blob
	// serialises the creation and removal of one blob and its thumbnail
	// (striped by hash). Lock order: up, then blob.
	up   [256]sync.Mutex
	blob [256]sync.Mutex
	// thumbs bounds concurrent thumbnail decoding (memory).
	thumbs chan struct{}

	thumbsMade atomic.Int64
	collected  atomic.Int64
	chunks     atomic.Int64
	commits    atomic.Int64

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New opens the file tree in o.Dir, creating its folders.
func New(o Options) (*Service, error) {
	if o.Dir == "" || o.Meta == nil {
		return nil, errors.New("files: Dir and Meta are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.ThumbSide <= 0 {
		o.ThumbSide = DefaultThumbSide
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = DefaultSweep
	}
	if o.Content == nil {
		d, err := NewDisk(o.Dir)
		if err != nil {
			return nil, err
		}
		o.Content = d
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "thumbs"), 0o700); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	return &Service{o: o, seed: maphash.MakeSeed(), thumbs: make(chan struct{}, 1), stop: make(chan struct{})}, nil
}

// Start runs the collector every SweepEvery until Stop.
func (s *Service) Start() {
	s.wg.Add(1)
	go s.collector()
}

// Stop ends the collector and waits for it. Safe to call more than once.
func (s *Service) Stop() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}

func (s *Service) collector() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep is one round of the collector: Collect when it is this node's
// turn, and on every node the pruning of its cached copies.
func (s *Service) sweep() {
	turn := true
	if s.o.Turn != nil {
		var err error
		if turn, err = s.o.Turn(); err != nil {
			s.o.Log.Warn("files: collector turn", "error", err)
		}
	}
	if turn {
		if n, err := s.Collect(s.o.Now()); err != nil {
			s.o.Log.Warn("files: collect", "error", err)
		} else if n > 0 {
			s.o.Log.Info("files: collected", "files", n)
		}
	}
	if c, ok := s.o.Content.(Cache); ok {
		if n, err := c.Prune(s.o.Meta.BlobInUse); err != nil {
			s.o.Log.Warn("files: prune cached blobs", "error", err)
		} else if n > 0 {
			s.o.Log.Debug("files: pruned cached blobs", "blobs", n)
		}
	}
}

// Stats are counters for tests and metrics.
type Stats struct {
	// ThumbsMade counts thumbnails generated (each is made once).
	ThumbsMade int64
	// Collected counts files removed by the collector.
	Collected int64
	// Chunks counts MQTT chunks stored; Commits uploads committed (MQTT
	// and HTTP).
	Chunks, Commits int64
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{ThumbsMade: s.thumbsMade.Load(), Collected: s.collected.Load(),
		Chunks: s.chunks.Load(), Commits: s.commits.Load()}
}

// full refuses writes while the disk is below its reserve.
func (s *Service) full() error {
	if s.o.DiskLow != nil && s.o.DiskLow() {
		return ErrDiskFull
	}
	return nil
}

// SetAccess sets who besides the uploader may read files; call it before
// the service is used (the IM service that decides exists only later).
func (s *Service) SetAccess(a Access) { s.o.Access = a }

// Meta returns the metadata store (compliance exports read it).
func (s *Service) Meta() Meta { return s.o.Meta }

// OpenFile is Read as an io.ReadCloser (compliance.Files.Open).
func (s *Service) OpenFile(f File) (io.ReadCloser, error) { return s.Read(f) }

// MaxSize returns the largest file accepted.
func (s *Service) MaxSize() int64 { return s.o.MaxSize }

func (s *Service) lockUp(fid string) func() {
	m := &s.up[maphash.String(s.seed, fid)%uint64(len(s.up))]
	m.Lock()
	return m.Unlock
}

func (s *Service) lockBlob(h string) func() {
	m := &s.blob[maphash.String(s.seed, h)%uint64(len(s.blob))]
	m.Lock()
	return m.Unlock
}

// BlobPath is where the content with hash h lives on a single node (h is
// validated hex); in a cluster, where this node's cached copy is.
func (s *Service) BlobPath(h string) string { return BlobPath(s.o.Dir, h) }

func (s *Service) thumbPath(h string) string {
	return ThumbPath(s.o.Dir, h)
}

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Service) quota() int64 {
	if s.o.Quota <= 0 {
		return -1
	}
	return s.o.Quota
}

// checkNew validates what a new upload declares.
func (s *Service) checkNew(size int64, name, ct string) error {
	switch {
	case size < 0:
		return ErrBadSize
	case s.o.MaxSize > 0 && size > s.o.MaxSize:
		return ErrTooLarge
	case len(name) > 255:
		return ErrBadName
	case len(ct) > 128:
		return ErrBadCT
	}
	return nil
}

// own returns the file fid if uid uploaded it, else ErrUnknownFile.
func (s *Service) own(uid, fid string) (File, error) {
	f, err := s.o.Meta.Get(fid)
	if errors.Is(err, ErrNotFound) || err == nil && f.Owner != uid {
		return File{}, ErrUnknownFile
	}
	return f, err
}

// PutRequest is what file.put declares (PROTOCOL §11).
type PutRequest struct {
	Name string
	Size int64
	CT   string
	Hash string
}

// Put starts (or resumes) a chunked upload: a new file with chunks of
// chunk bytes, or the caller's existing file with the same hash, with the
// ranges of chunk indexes stored so far. A committed file has them all.
func (s *Service) Put(uid string, p PutRequest, chunk int) (File, []Range, error) {
	if !validHash(p.Hash) {
		return File{}, nil, ErrBadHash
	}
	if chunk <= 0 {
		return File{}, nil, errors.New("files: chunk size must be positive")
	}
	if err := s.checkNew(p.Size, p.Name, p.CT); err != nil {
		return File{}, nil, err
	}
	if err := s.full(); err != nil {
		return File{}, nil, err
	}
	f, err := s.o.Meta.ByHash(uid, p.Hash)
	switch {
	case err == nil:
		if f.Size != p.Size {
			return File{}, nil, ErrSizeConflict
		}
		if f.IsCommitted() {
			if f.Chunk == 0 { // uploaded over HTTP: report it in this device's chunks
				f.Chunk = chunk
			}
			return f, allChunks(f.Chunks()), nil
		}
		have, err := s.readHave(f)
		return f, Ranges(have), err
	case !errors.Is(err, ErrNotFound):
		return File{}, nil, err
	}
	f = File{FID: ulid.Make().String(), Owner: uid, Name: p.Name, Size: p.Size, Hash: p.Hash, CT: p.CT,
		Chunk: chunk, Created: s.o.Now().UTC()}
	if err := s.create(f); err != nil {
		return File{}, nil, err
	}
	return f, []Range{}, nil
}

// create records a new upload and makes its part.
func (s *Service) create(f File) error {
	if err := s.o.Meta.Create(f, s.quota()); err != nil {
		if errors.Is(err, ErrQuota) {
			return ErrOverQuota
		}
		return err
	}
	if err := s.o.Content.NewPart(f); err != nil {
		return errors.Join(s.stored(err), s.o.Meta.Delete(f.FID), s.o.Content.RemovePart(f))
	}
	return nil
}

// gone turns an upload that vanished under a commit (collected as
// expired meanwhile, on another node of a cluster) into ErrUnknownFile.
func gone(err error) error {
	if errors.Is(err, ErrNotFound) {
		return ErrUnknownFile
	}
	return err
}

// stored turns a full store into 507; other errors stay.
func (s *Service) stored(err error) error {
	if errors.Is(err, ErrDiskFull) {
		return ErrDiskFull
	}
	return err
}

func allChunks(n int) []Range {
	if n == 0 {
		return []Range{}
	}
	return []Range{{0, n - 1}}
}

// readHave reads an upload's have map (one byte per chunk).
func (s *Service) readHave(f File) ([]byte, error) {
	b, err := s.o.Content.Have(f)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUnknownFile // expired or committed meanwhile
	}
	return b, err
}

// WriteChunk stores chunk i of uid's upload fid durably (fsync'd) before
// it returns. A chunk of a committed file is accepted and ignored (a
// resend after a lost acknowledgement).
func (s *Service) WriteChunk(uid, fid string, i int, data []byte) error {
	f, err := s.own(uid, fid)
	if err != nil {
		return err
	}
	if f.IsCommitted() {
		return nil
	}
	if f.Chunk == 0 {
		return ErrNotChunked
	}
	n := f.Chunks()
	if i >= n {
		return ErrPastEnd
	}
	want := int64(f.Chunk)
	if i == n-1 {
		want = f.Size - int64(i)*int64(f.Chunk)
	}
	if int64(len(data)) != want {
		return ErrChunkSize
	}
	if err := s.full(); err != nil {
		return err
	}
	defer s.lockUp(fid)()
	err = s.o.Content.WriteChunk(f, i, data)
	if errors.Is(err, ErrNotFound) {
		return s.goneMeanwhile(fid)
	}
	if err != nil {
		return s.stored(err)
	}
	s.chunks.Add(1)
	return nil
}

// goneMeanwhile answers a write whose part file vanished: committed by a
// concurrent commit (fine) or collected.
func (s *Service) goneMeanwhile(fid string) error {
	if f, err := s.o.Meta.Get(fid); err == nil && f.IsCommitted() {
		return nil
	}
	return ErrUnknownFile
}

// Commit checks that every chunk of uid's upload fid is there and that
// the content has the declared hash, then commits it. On ErrIncomplete
// the ranges stored so far are returned; on ErrHashMismatch the upload
// starts over (no chunk is kept).
func (s *Service) Commit(uid, fid string) (File, []Range, error) {
	f, err := s.own(uid, fid)
	if err != nil || f.IsCommitted() {
		return f, nil, err
	}
	if f.Chunk == 0 {
		return f, []Range{}, ErrIncomplete // tus: finished by its last PATCH
	}
	defer s.lockUp(fid)()
	if f, err = s.own(uid, fid); err != nil || f.IsCommitted() {
		return f, nil, err
	}
	have, err := s.readHave(f)
	if err != nil {
		return f, nil, err
	}
	if !HaveAll(have, f.Chunks()) {
		return f, Ranges(have), ErrIncomplete
	}
	sc, err := s.scan(f)
	if err != nil {
		return f, nil, err
	}
	if sc.hash != f.Hash {
		if err := s.o.Content.ClearChunks(f); err != nil {
			return f, nil, err
		}
		return f, []Range{}, ErrHashMismatch
	}
	if err := s.finalize(&f, sc); err != nil {
		return f, nil, err
	}
	return f, allChunks(f.Chunks()), nil
}

// scanned is what one pass over a complete upload learns.
type scanned struct {
	hash, ct string
	w, h     int
}

// scan reads complete upload f once: its SHA-256, its sniffed content
// type and, for an image, its pixel size.
func (s *Service) scan(f File) (scanned, error) {
	r, err := s.o.Content.OpenPart(f)
	if errors.Is(err, ErrNotFound) {
		return scanned{}, ErrUnknownFile
	}
	if err != nil {
		return scanned{}, err
	}
	defer r.Close()
	sum := sha256.New()
	tee := io.TeeReader(r, sum)
	var sc scanned
	if sc.ct, sc.w, sc.h, err = probe(tee); err != nil {
		return scanned{}, gone(err)
	}
	if _, err := io.Copy(sum, r); err != nil {
		return scanned{}, gone(err)
	}
	sc.hash = hex.EncodeToString(sum.Sum(nil))
	return sc, nil
}

// finalize makes a complete, scanned upload the blob f.Hash (or drops
// its bytes when that content is stored already) and records the
// commit. The caller holds the upload's lock.
func (s *Service) finalize(f *File, sc scanned) error {
	unlock := s.lockBlob(f.Hash)
	defer unlock()
	if err := s.o.Content.Commit(*f, f.Hash); err != nil {
		return gone(s.stored(err))
	}
	f.CT, f.W, f.H = sc.ct, sc.w, sc.h
	f.Committed = s.o.Now().UTC()
	if err := s.o.Meta.Update(*f); err != nil {
		return gone(err)
	}
	s.commits.Add(1)
	return nil
}

// CreateUpload starts an upload whose bytes arrive in order (tus): no
// hash is declared; it is computed by FinishUpload.
func (s *Service) CreateUpload(uid string, size int64, name, ct string) (File, error) {
	if err := s.checkNew(size, name, ct); err != nil {
		return File{}, err
	}
	if err := s.full(); err != nil {
		return File{}, err
	}
	f := File{FID: ulid.Make().String(), Owner: uid, Name: name, Size: size, CT: ct, Created: s.o.Now().UTC()}
	return f, s.create(f)
}

// Upload returns uid's file fid and how many of its bytes are stored.
func (s *Service) Upload(uid, fid string) (File, int64, error) {
	f, err := s.own(uid, fid)
	if err != nil {
		return f, 0, err
	}
	if f.IsCommitted() {
		return f, f.Size, nil
	}
	if f.Chunk != 0 {
		return f, 0, ErrUnknownFile // a chunked upload is not resumed over HTTP
	}
	n, err := s.o.Content.Appended(f)
	if errors.Is(err, ErrNotFound) {
		return f, 0, ErrUnknownFile
	}
	return f, n, err
}

// Append writes r's bytes at offset of uid's in-order upload fid, at most
// up to its size, fsyncs them and returns how many were written; the
// bytes written count even when r fails midway (a cut connection).
func (s *Service) Append(uid, fid string, offset int64, r io.Reader) (int64, error) {
	defer s.lockUp(fid)()
	f, cur, err := s.Upload(uid, fid)
	if err != nil {
		return 0, err
	}
	if f.IsCommitted() {
		return 0, ErrCommitted
	}
	if cur != offset {
		return 0, ErrOffset
	}
	if err := s.full(); err != nil {
		return 0, err
	}
	n, err := s.o.Content.Append(f, offset, r, f.Size-offset)
	if errors.Is(err, ErrNotFound) {
		return n, ErrUnknownFile
	}
	return n, s.stored(err)
}

// FinishUpload commits uid's in-order upload fid once all its bytes are
// stored, computing its hash.
func (s *Service) FinishUpload(uid, fid string) (File, error) {
	defer s.lockUp(fid)()
	f, cur, err := s.Upload(uid, fid)
	if err != nil || f.IsCommitted() {
		return f, err
	}
	if cur != f.Size {
		return f, ErrIncomplete
	}
	sc, err := s.scan(f)
	if err != nil {
		return f, err
	}
	f.Hash = sc.hash
	return f, s.finalize(&f, sc)
}

// Abort removes uid's upload fid unless it has been committed.
func (s *Service) Abort(uid, fid string) error {
	defer s.lockUp(fid)()
	f, err := s.own(uid, fid)
	if err != nil {
		return err
	}
	if f.IsCommitted() {
		return ErrCommitted
	}
	return s.remove(f)
}

// readable returns file fid if uid may read it: its uploader always; a
// committed file also whoever Access admits.
func (s *Service) readable(uid, fid string) (File, error) {
	f, err := s.o.Meta.Get(fid)
	if errors.Is(err, ErrNotFound) {
		return f, ErrUnknownFile
	}
	if err != nil || f.Owner == uid {
		return f, err
	}
	if !f.IsCommitted() || s.o.Access == nil {
		return File{}, ErrUnknownFile
	}
	refs, err := s.o.Meta.Refs(fid)
	if err != nil {
		return File{}, err
	}
	ok, err := s.o.Access.MayRead(uid, refs)
	if err != nil {
		return File{}, err
	}
	if !ok {
		return File{}, ErrUnknownFile
	}
	return f, nil
}

// Stat returns file fid as uid may see it, and for an upload in progress
// the ranges stored in chunks of its own size (all of them once
// committed, in chunks of chunk bytes for a file uploaded over HTTP).
func (s *Service) Stat(uid, fid string, chunk int) (File, []Range, error) {
	f, err := s.readable(uid, fid)
	if err != nil {
		return f, nil, err
	}
	inOrder := f.Chunk == 0
	if inOrder {
		f.Chunk = chunk
	}
	switch {
	case f.IsCommitted():
		return f, allChunks(f.Chunks()), nil
	case inOrder:
		return f, []Range{}, nil // a tus upload in progress: no chunks
	}
	have, err := s.readHave(f)
	return f, Ranges(have), err
}

// Open opens the content of committed file fid for uid.
func (s *Service) Open(uid, fid string) (Blob, File, error) {
	f, err := s.readable(uid, fid)
	if err != nil {
		return nil, f, err
	}
	if !f.IsCommitted() {
		return nil, f, ErrNotCommitted
	}
	r, err := s.Read(f)
	return r, f, err
}

// Read opens the content of committed file f, which the caller has
// checked uid may read (Get).
func (s *Service) Read(f File) (Blob, error) {
	r, err := s.o.Content.OpenBlob(f.Hash)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("files: content of %s (%s) is missing", f.FID, f.Hash)
	}
	return r, err
}

// Get returns committed file fid if uid may read it: the check a message
// attaching fid needs (ErrNotCommitted for an upload of uid's own still
// in progress).
func (s *Service) Get(uid, fid string) (File, error) {
	f, err := s.readable(uid, fid)
	if err == nil && !f.IsCommitted() {
		err = ErrNotCommitted
	}
	return f, err
}

// Thumb opens the JPEG thumbnail of image file fid for uid, making it the
// first time (once per content: later calls read the cached one).
func (s *Service) Thumb(uid, fid string) (*os.File, File, error) {
	f, err := s.Get(uid, fid)
	if err != nil {
		return nil, f, err
	}
	switch f.CT {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
	default:
		return nil, f, ErrNotImage
	}
	if int64(f.W)*int64(f.H) > s.o.MaxPixels {
		return nil, f, ErrTooManyPixels
	}
	defer s.lockBlob(f.Hash)()
	path := s.thumbPath(f.Hash)
	if r, err := os.Open(path); err == nil {
		return r, f, nil
	}
	if err := s.makeThumb(f.Hash, path); err != nil {
		return nil, f, err
	}
	r, err := os.Open(path)
	return r, f, err
}

func (s *Service) makeThumb(h, path string) error {
	s.thumbs <- struct{}{}
	defer func() { <-s.thumbs }()
	src, err := s.o.Content.OpenBlob(h)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".thumb-*")
	if err != nil {
		return err
	}
	if err := thumbnail(src, tmp, s.o.ThumbSide, s.o.MaxPixels); err != nil {
		return errors.Join(err, tmp.Close(), os.Remove(tmp.Name()))
	}
	if err := tmp.Close(); err != nil {
		return errors.Join(err, os.Remove(tmp.Name()))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	s.thumbsMade.Add(1)
	return nil
}

// AddRef records that ref (a message, a hold) refers to file fid.
func (s *Service) AddRef(fid, ref string) error {
	defer s.lockUp(fid)()
	err := s.o.Meta.AddRef(fid, ref)
	if errors.Is(err, ErrNotFound) {
		return ErrUnknownFile
	}
	return err
}

// RemoveRef drops reference ref of fid; the file is removed with its last
// reference (its blob too, unless another file has the same content).
func (s *Service) RemoveRef(fid, ref string) error {
	_, err := s.dropRef(fid, ref)
	return err
}

// dropRef is RemoveRef, reporting whether the file went.
func (s *Service) dropRef(fid, ref string) (bool, error) {
	defer s.lockUp(fid)()
	left, err := s.o.Meta.RemoveRef(fid, ref)
	if err != nil || left > 0 {
		return false, err
	}
	f, err := s.o.Meta.Get(fid)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, s.remove(f)
}

// remove deletes file f: record, upload files, and its blob and thumbnail
// when no other file has that content. The caller holds f's upload lock.
func (s *Service) remove(f File) error {
	if err := s.o.Meta.Delete(f.FID); err != nil {
		return err
	}
	if err := s.o.Content.RemovePart(f); err != nil {
		return err
	}
	if !f.IsCommitted() {
		return nil
	}
	defer s.lockBlob(f.Hash)()
	used, err := s.o.Meta.BlobInUse(f.Hash)
	if err != nil || used {
		return err
	}
	return errors.Join(s.o.Content.RemoveBlob(f.Hash), rmIfExists(s.thumbPath(f.Hash)))
}

// Collect removes uploads not committed, and committed files never
// referenced, for longer than the expiry before now, then drops the
// references that no longer stand (Access.Live) and the files that goes
// with their last one; it returns how many files went.
func (s *Service) Collect(now time.Time) (int, error) {
	n, err := s.collectPending(now)
	if err != nil {
		return n, err
	}
	m, err := s.collectRefs()
	if err != nil {
		return n + m, err
	}
	if sw, ok := s.o.Content.(Sweeper); ok {
		if _, err := sw.Sweep(now, s.o.Meta.BlobInUse); err != nil {
			return n + m, err
		}
	}
	return n + m, nil
}

// collectRefs walks every reference and drops those Access says are gone.
func (s *Service) collectRefs() (int, error) {
	if s.o.Access == nil {
		return 0, nil
	}
	const batch = 256
	n, fid, ref := 0, "", ""
	for {
		page, err := s.o.Meta.RefsAfter(fid, ref, batch)
		if err != nil {
			return n, err
		}
		for _, r := range page {
			live, err := s.o.Access.Live(r.Ref)
			if err != nil {
				return n, err
			}
			if live {
				continue
			}
			gone, err := s.dropRef(r.FID, r.Ref)
			if err != nil {
				return n, err
			}
			if gone {
				n++
				s.collected.Add(1)
			}
		}
		if len(page) < batch {
			return n, nil
		}
		fid, ref = page[len(page)-1].FID, page[len(page)-1].Ref
	}
}

func (s *Service) collectPending(now time.Time) (int, error) {
	const batch = 256
	n := 0
	for {
		fs, err := s.o.Meta.Pending(now.Add(-s.o.Expiry), batch)
		if err != nil {
			return n, err
		}
		removed := 0
		for _, f := range fs {
			ok, err := s.collect(f.FID, now)
			if err != nil {
				return n, err
			}
			if ok {
				removed++
			}
		}
		n += removed
		s.collected.Add(int64(removed))
		if len(fs) < batch || removed == 0 {
			return n, nil
		}
	}
}

// collect removes fid if it is still pending and expired.
func (s *Service) collect(fid string, now time.Time) (bool, error) {
	defer s.lockUp(fid)()
	f, err := s.o.Meta.Get(fid)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	refs, err := s.o.Meta.Refs(fid)
	if err != nil || len(refs) > 0 || !f.Since().Before(now.Add(-s.o.Expiry)) {
		return false, err
	}
	return true, s.remove(f)
}

package jetstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/tern-im/tern/internal/files"
)

// pieceSize is the largest message of an in-order upload: well under
// NATS's 1 MiB payload limit, and what a cut connection may lose.
const pieceSize = 256 << 10

// blobTimeout bounds copying one blob into or out of the object store.
const blobTimeout = 10 * time.Minute

// Headers of upload pieces.
const (
	hdrOff   = "Tern-Off"   // the piece's offset in the upload
	hdrPiece = "Tern-Piece" // the piece's id: a write whose answer was lost
)

func upSubj(fid string, rest ...string) string {
	return "tern-up." + tok(fid) + "." + strings.Join(rest, ".")
}

// full turns JetStream's answers into the file store's errors: storage
// that is full (the server's max_file_store, a stream's max bytes, a
// full disk) is files.ErrDiskFull (507), a failed compare-and-set
// errConflict; neither is retried by do.
func full(err error) error {
	var apiErr *jetstream.APIError
	if err == nil || !errors.As(err, &apiErr) {
		return err
	}
	switch apiErr.ErrorCode {
	case 10023: // insufficient resources
		return files.ErrDiskFull
	case 10071, 10164: // wrong last sequence
		return errConflict
	case 10077: // store failed
		d := strings.ToLower(apiErr.Description)
		if strings.Contains(d, "maximum bytes") || strings.Contains(d, "insufficient") || strings.Contains(d, "no space") {
			return files.ErrDiskFull
		}
	}
	return err
}

// pub publishes m, expecting its subject's last sequence to be *expect
// when set, and returns its stream sequence; it retries through a leader
// election.
func (f *Files) pub(m *nats.Msg, expect *uint64) (uint64, error) {
	var opts []jetstream.PublishOpt
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	var ack *jetstream.PubAck
	err := f.s.do(func(ctx context.Context) (err error) {
		ack, err = f.s.js.PublishMsg(ctx, m, opts...)
		return full(err)
	})
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// NewPart stores nothing: an upload's part is its messages in TERN_UP.
func (f *Files) NewPart(files.File) error { return nil }

// WriteChunk stores chunk i as the one message of its subject; a chunk
// stored already (a resend) is left as it is.
func (f *Files) WriteChunk(fl files.File, i int, data []byte) error {
	m := nats.NewMsg(upSubj(fl.FID, "c", strconv.Itoa(i)))
	m.Data = data
	_, err := f.pub(m, exp(0))
	if errors.Is(err, errConflict) {
		return nil
	}
	return err
}

// Have reads which chunk subjects hold a message.
func (f *Files) Have(fl files.File) ([]byte, error) {
	var info *jetstream.StreamInfo
	err := f.s.do(func(ctx context.Context) (err error) {
		info, err = f.up.Info(ctx, jetstream.WithSubjectFilter(upSubj(fl.FID, "c", "*")))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstore: chunks of %s: %w", fl.FID, err)
	}
	have := make([]byte, fl.Chunks())
	for subj := range info.State.Subjects {
		i, err := strconv.Atoi(subj[strings.LastIndexByte(subj, '.')+1:])
		if err == nil && i >= 0 && i < len(have) {
			have[i] = 1
		}
	}
	return have, nil
}

// ClearChunks purges the chunk subjects.
func (f *Files) ClearChunks(fl files.File) error {
	return f.purge(upSubj(fl.FID, "c", ">"))
}

// RemovePart purges every message of the upload.
func (f *Files) RemovePart(fl files.File) error {
	return f.purge(upSubj(fl.FID, ">"))
}

func (f *Files) purge(filter string) error {
	err := f.s.do(func(ctx context.Context) error {
		return f.up.Purge(ctx, jetstream.WithPurgeSubject(filter))
	})
	if err != nil {
		return fmt.Errorf("jetstore: purge %s: %w", filter, err)
	}
	return nil
}

// lastPiece returns the last piece of in-order upload fid (nil: none).
func (f *Files) lastPiece(fid string) (*jetstream.RawStreamMsg, error) {
	var m *jetstream.RawStreamMsg
	err := f.s.do(func(ctx context.Context) (err error) {
		m, err = f.up.GetLastMsgForSubject(ctx, upSubj(fid, "t"))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jetstore: upload %s: %w", fid, err)
	}
	return m, nil
}

// pieceEnd is where the bytes after piece m go.
func pieceEnd(m *jetstream.RawStreamMsg) (int64, error) {
	if m == nil {
		return 0, nil
	}
	off, err := strconv.ParseInt(m.Header.Get(hdrOff), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("jetstore: upload piece %d: bad offset: %w", m.Sequence, err)
	}
	return off + int64(len(m.Data)), nil
}

// Appended is the end of the last piece: every piece was acknowledged
// to the client only once stored (R3), so any node resumes from there.
func (f *Files) Appended(fl files.File) (int64, error) {
	m, err := f.lastPiece(fl.FID)
	if err != nil {
		return 0, err
	}
	return pieceEnd(m)
}

// Append stores r's bytes in pieces of up to pieceSize, each with a
// compare-and-set on the last piece: of two writers at one offset (two
// nodes, a client that moved) only one goes on, the other gets
// ErrOffset.
func (f *Files) Append(fl files.File, offset int64, r io.Reader, limit int64) (int64, error) {
	last, err := f.lastPiece(fl.FID)
	if err != nil {
		return 0, err
	}
	end, err := pieceEnd(last)
	if err != nil {
		return 0, err
	}
	if end != offset {
		return 0, files.ErrOffset
	}
	var seq uint64
	if last != nil {
		seq = last.Sequence
	}
	buf := make([]byte, min(pieceSize, max(limit, 1)))
	var n int64
	for n < limit {
		k, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), limit-n)])
		if k > 0 {
			id := nuid.Next()
			m := nats.NewMsg(upSubj(fl.FID, "t"))
			m.Data = buf[:k]
			m.Header.Set(hdrOff, strconv.FormatInt(offset+n, 10))
			m.Header.Set(hdrPiece, id)
			s, err := f.pub(m, exp(seq))
			if errors.Is(err, errConflict) {
				// Stored with its answer lost (a retry), or another
				// writer's piece came first.
				lm, lerr := f.lastPiece(fl.FID)
				if lerr != nil || lm == nil || lm.Header.Get(hdrPiece) != id {
					return n, files.ErrOffset
				}
				s, err = lm.Sequence, nil
			}
			if err != nil {
				return n, err
			}
			seq = s
			n += int64(k)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return n, nil
		default:
			return n, rerr
		}
	}
	return n, nil
}

// OpenPart reads the upload's messages in order.
func (f *Files) OpenPart(fl files.File) (io.ReadCloser, error) {
	return &partReader{f: f, fl: fl, seq: 1}, nil
}

// partReader reads an upload: chunk after chunk, or piece after piece.
type partReader struct {
	f   *Files
	fl  files.File
	buf []byte
	pos int64  // bytes handed out
	i   int    // next chunk
	seq uint64 // where to look for the next piece
}

func (p *partReader) Read(b []byte) (int, error) {
	for len(p.buf) == 0 {
		if p.pos >= p.fl.Size {
			return 0, io.EOF
		}
		if err := p.next(); err != nil {
			return 0, err
		}
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	p.pos += int64(n)
	return n, nil
}

func (p *partReader) next() error {
	var m *jetstream.RawStreamMsg
	if p.fl.Chunk > 0 {
		subj := upSubj(p.fl.FID, "c", strconv.Itoa(p.i))
		err := p.f.s.do(func(ctx context.Context) (err error) {
			m, err = p.f.up.GetLastMsgForSubject(ctx, subj)
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return files.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("jetstore: read %s: %w", subj, err)
		}
		p.i++
		p.buf = m.Data
		return nil
	}
	subj := upSubj(p.fl.FID, "t")
	err := p.f.s.do(func(ctx context.Context) (err error) {
		m, err = p.f.up.GetMsg(ctx, p.seq, jetstream.WithGetMsgSubject(subj))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return files.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("jetstore: read %s: %w", subj, err)
	}
	off, err := strconv.ParseInt(m.Header.Get(hdrOff), 10, 64)
	if err != nil || off != p.pos {
		return fmt.Errorf("jetstore: upload %s: piece %d at %d, expected %d", p.fl.FID, m.Sequence, off, p.pos)
	}
	p.seq = m.Sequence + 1
	p.buf = m.Data
	return nil
}

func (p *partReader) Close() error { return nil }

// Commit makes the upload the content of blob h: when an object holds h
// already, it touches the blob record (a collector that read the record
// before cannot remove it any more, and one that reads it now waits out
// the grace); otherwise it copies the upload into a new object and
// names it in the record. Then it purges the upload.
func (f *Files) Commit(fl files.File, h string) error {
	for attempt := 0; ; attempt++ {
		done, err := f.commitBlob(fl, h)
		if err != nil {
			return err
		}
		if done {
			break
		}
		if attempt >= maxAttempts {
			return ErrContention
		}
		if !f.s.backoff(attempt) {
			return ErrClosed
		}
	}
	return f.RemovePart(fl)
}

func (f *Files) commitBlob(fl files.File, h string) (bool, error) {
	br, r, err := f.blob(h)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	var name string
	if br.Obj == "" {
		name = h + "." + nuid.Next()
		if err := f.putObject(fl, name); err != nil {
			return false, err
		}
		br.Obj = name
	}
	br.T = f.o.Now().UnixNano()
	data, err := json.Marshal(br)
	if err != nil {
		return false, err
	}
	_, err = f.s.publish(nuid.Next(), []msg{kvPut(blobKey(h), data, exp(r.seq))}, func() {})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errConflict), errors.Is(err, errLost):
		if name == "" {
			return false, nil // touch again from a fresh read
		}
		if now, _, gerr := f.blob(h); gerr == nil && now.Obj == name {
			return true, nil // ours, with its answer lost
		}
		return false, f.deleteObject(name)
	}
	return false, err
}

// putObject copies the upload into the object name. A copy that met a
// leader election (no stream leader, or a chunk whose answer never came)
// is made again from the start for up to the failover time: Put replaces
// what an earlier try left under the name.
func (f *Files) putObject(fl files.File, name string) error {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := f.putObjectOnce(fl, name)
		if err == nil || !transient(err) || time.Since(start) > f.s.opts.Failover {
			return err
		}
		f.s.lg.Warn("jetstore: a blob's copy met a leader election; copying it again", "fid", fl.FID, "err", err)
		if !f.s.backoff(attempt) {
			return ErrClosed
		}
	}
}

func (f *Files) putObjectOnce(fl files.File, name string) error {
	pr, err := f.OpenPart(fl)
	if err != nil {
		return err
	}
	defer pr.Close()
	ctx, cancel := f.ctxNoDeadline(blobTimeout)
	defer cancel()
	info, err := f.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, pr)
	if err != nil {
		return fmt.Errorf("jetstore: store blob: %w", full(err))
	}
	if int64(info.Size) != fl.Size {
		return errors.Join(fmt.Errorf("jetstore: stored %d bytes of %s, want %d", info.Size, fl.FID, fl.Size), f.deleteObject(name))
	}
	return nil
}

func (f *Files) deleteObject(name string) error {
	ctx, cancel := f.ctx(time.Minute)
	defer cancel()
	if err := f.obs.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("jetstore: delete blob %s: %w", name, err)
	}
	return nil
}

// OpenBlob opens this node's copy of blob h, copying it from the object
// store first (and checking its hash) when this node has none.
func (f *Files) OpenBlob(h string) (files.Blob, error) {
	path := files.BlobPath(f.o.Dir, h)
	if r, err := os.Open(path); err == nil {
		return r, nil
	}
	if f.o.DiskLow != nil && f.o.DiskLow() {
		return nil, files.ErrDiskFull
	}
	br, _, err := f.blob(h)
	if errors.Is(err, ErrNotFound) || err == nil && br.Obj == "" {
		return nil, files.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := f.fetch(br.Obj, h, path); err != nil {
		return nil, err
	}
	r, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// fetch copies object name into path through a temporary file, checking
// that its content has hash h. Its chunks are read one by one from the
// stream's leader (see Files.blobs).
func (f *Files) fetch(name, h, path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var info *jetstream.ObjectInfo
	err := f.s.do(func(ctx context.Context) (err error) {
		info, err = f.obs.GetInfo(ctx, name)
		return err
	})
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return files.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("jetstore: blob %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return err
	}
	sum := sha256.New()
	cerr := f.copyChunks(io.MultiWriter(tmp, sum), info)
	if err := errors.Join(cerr, tmp.Sync(), tmp.Close()); err != nil {
		return errors.Join(fmt.Errorf("jetstore: fetch blob %s: %w", name, err), os.Remove(tmp.Name()))
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h {
		return errors.Join(fmt.Errorf("jetstore: blob %s has hash %s, want %s", name, got, h), os.Remove(tmp.Name()))
	}
	return os.Rename(tmp.Name(), path)
}

// copyChunks writes the chunks of object info to w, in order.
func (f *Files) copyChunks(w io.Writer, info *jetstream.ObjectInfo) error {
	subj := "$O." + BlobBucket + ".C." + info.NUID
	var seq, got uint64 = 1, 0
	for got < info.Size {
		var m *jetstream.RawStreamMsg
		err := f.s.do(func(ctx context.Context) (err error) {
			m, err = f.blobs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("%d of %d bytes stored", got, info.Size)
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(m.Data); err != nil {
			return err
		}
		got += uint64(len(m.Data))
		seq = m.Sequence + 1
	}
	return nil
}

// RemoveBlob removes blob h now unless a commit touched it within the
// grace; then the collector's Sweep removes it later.
func (f *Files) RemoveBlob(h string) error {
	_, err := f.removeBlob(h, f.o.Now())
	return errors.Join(err, rmIfExists(files.BlobPath(f.o.Dir, h)))
}

// removeBlob deletes the record of blob h, with a compare-and-set on
// what it read, and then its object, if no file uses it and no commit
// touched it within the grace.
func (f *Files) removeBlob(h string, now time.Time) (bool, error) {
	br, r, err := f.blob(h)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil || len(br.Users) > 0 || now.Sub(time.Unix(0, br.T)) < f.o.Grace {
		return false, err
	}
	_, err = f.s.publish(nuid.Next(), []msg{kvDel(blobKey(h), exp(r.seq))}, func() {})
	switch {
	case errors.Is(err, errConflict), errors.Is(err, errLost):
		return false, nil // touched or used meanwhile; the next sweep looks again
	case err != nil:
		return false, err
	}
	if br.Obj == "" {
		return false, nil
	}
	return true, f.deleteObject(br.Obj)
}

// Sweep is the collector's round on the shared store: blobs that no
// file uses any more, objects that no blob record names (a commit that
// died between storing and naming), and uploads whose file is gone or
// committed (one that died before purging).
func (f *Files) Sweep(now time.Time, _ func(string) (bool, error)) (int, error) {
	ks, err := f.keys("o.*")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range ks {
		h, err := untok(strings.TrimPrefix(k, "o."))
		if err != nil {
			return n, err
		}
		gone, err := f.removeBlob(h, now)
		if err != nil {
			return n, err
		}
		if gone {
			n++
		}
	}
	if err := f.sweepObjects(now); err != nil {
		return n, err
	}
	return n, f.sweepUploads()
}

func (f *Files) sweepObjects(now time.Time) error {
	var info *jetstream.StreamInfo
	err := f.s.do(func(ctx context.Context) (err error) {
		info, err = f.blobs.Info(ctx, jetstream.WithSubjectFilter("$O."+BlobBucket+".M.>"))
		return err
	})
	if err != nil {
		return fmt.Errorf("jetstore: list blobs: %w", err)
	}
	for subj := range info.State.Subjects {
		var m *jetstream.RawStreamMsg
		err := f.s.do(func(ctx context.Context) (err error) {
			m, err = f.blobs.GetLastMsgForSubject(ctx, subj)
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("jetstore: blob %s: %w", subj, err)
		}
		var o jetstream.ObjectInfo
		if err := json.Unmarshal(m.Data, &o); err != nil {
			return fmt.Errorf("jetstore: blob %s: %w", subj, err)
		}
		if o.Deleted || now.Sub(m.Time) < f.o.Grace {
			continue
		}
		h, _, _ := strings.Cut(o.Name, ".")
		br, _, err := f.blob(h)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && br.Obj == o.Name {
			continue
		}
		if err := f.deleteObject(o.Name); err != nil {
			return err
		}
	}
	return nil
}

func (f *Files) sweepUploads() error {
	var info *jetstream.StreamInfo
	err := f.s.do(func(ctx context.Context) (err error) {
		info, err = f.up.Info(ctx, jetstream.WithSubjectFilter("tern-up.>"))
		return err
	})
	if err != nil {
		return fmt.Errorf("jetstore: list uploads: %w", err)
	}
	seen := map[string]bool{}
	for subj := range info.State.Subjects {
		parts := strings.SplitN(subj, ".", 3)
		if len(parts) < 3 || seen[parts[1]] {
			continue
		}
		seen[parts[1]] = true
		fid, err := untok(parts[1])
		if err != nil {
			continue
		}
		fr, _, err := f.file(fid)
		if err != nil && !errors.Is(err, files.ErrNotFound) {
			return err
		}
		if err == nil && !fr.IsCommitted() {
			continue
		}
		if err := f.purge("tern-up." + parts[1] + ".>"); err != nil {
			return err
		}
	}
	return nil
}

// Prune drops this node's copies (and thumbnails) of blobs that no file
// uses any more.
func (f *Files) Prune(inUse func(string) (bool, error)) (int, error) {
	n := 0
	root := filepath.Join(f.o.Dir, "blobs")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		name := d.Name()
		if strings.HasPrefix(name, ".fetch-") {
			// A copy that did not finish (the node stopped).
			if info, err := d.Info(); err == nil && time.Since(info.ModTime()) > blobTimeout {
				return rmIfExists(path)
			}
			return nil
		}
		used, err := inUse(name)
		if err != nil || used {
			return err
		}
		n++
		return errors.Join(rmIfExists(path), rmIfExists(files.ThumbPath(f.o.Dir, name)))
	})
	return n, err
}

// Turn returns a files.Options.Turn: node takes the collector's turn
// when no other node holds it, for ttl (a lease in the bucket). The
// holder renews it each round; when it dies, another node takes it once
// ttl has passed.
func (f *Files) Turn(node string, ttl time.Duration) func() (bool, error) {
	return func() (bool, error) { return f.lease("files-gc", node, ttl) }
}

func (f *Files) lease(name, node string, ttl time.Duration) (bool, error) {
	key := "l." + tok(name)
	now := f.o.Now()
	r, err := f.kvGet(key)
	switch {
	case err == nil:
		holder, until, _ := strings.Cut(string(r.data), " ")
		ns, perr := strconv.ParseInt(until, 10, 64)
		if holder != node && perr == nil && now.UnixNano() < ns {
			return false, nil
		}
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	data := node + " " + strconv.FormatInt(now.Add(ttl).UnixNano(), 10)
	_, err = f.s.publish(nuid.Next(), []msg{kvPut(key, []byte(data), exp(r.seq))}, func() {})
	if errors.Is(err, errConflict) || errors.Is(err, errLost) {
		return false, nil // another node took it first
	}
	return err == nil, err
}

func rmIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

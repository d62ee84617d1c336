package jetstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/tern-im/tern/internal/files"
)

// Files assets (docs/files.md, "Cluster mode").
const (
	// FilesBucket is the KV bucket of file metadata.
	FilesBucket = "tern-files"
	// UploadStream holds the bytes of uploads in progress.
	UploadStream = "TERN_UP"
	// BlobBucket is the object store of committed content.
	BlobBucket = "tern-blobs"
	// DefaultGrace is how long a blob stays after its last file went
	// when a commit of the same content touched it: longer than any
	// commit takes between storing the content and recording the file.
	DefaultGrace = 10 * time.Minute
)

// FilesOptions configure OpenFiles.
type FilesOptions struct {
	// Dir is this node's {data}/files: it keeps copies of the blobs this
	// node served (blobs/…, the single-node layout) and the thumbnails.
	Dir string
	// Grace is how long an unused blob that a commit touched is kept
	// (DefaultGrace when zero).
	Grace time.Duration
	// DiskLow, if set, reports that this node's disk is below its
	// reserve: no blob is copied to it (507).
	DiskLow func() bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *slog.Logger
}

// Files is the file store of a cluster: files.Meta on the KV bucket
// tern-files, files.Content on the stream TERN_UP (uploads in progress)
// and the object store tern-blobs (committed content, R3 like the rest).
//
// Keys of tern-files (names as subject tokens, see tok):
//
//	f.<fid>                 the file record and its references (JSON)
//	u.<owner>               bytes counted against the owner's quota
//	h.<owner>.<h>           the owner's files with content h (ByHash)
//	p.<since ns>.<fid>      a file without references, since (Pending)
//	o.<h>                   blob h: its object, its files, last touched
//	l.<name>                a lease (the collector's turn)
//
// Every change is one atomic batch on the bucket's stream, with a
// compare-and-set on the file record (so the changes of one file are
// serialised across nodes), on the owner's usage, and on the hash and
// blob records it touches. Only the collector lists keys (f.*, p.*, o.*).
type Files struct {
	s   *Store
	o   FilesOptions
	kv  jetstream.KeyValue
	kvs jetstream.Stream // the bucket's stream: reads from its leader
	up  jetstream.Stream
	obs jetstream.ObjectStore
	// blobs is the object store's stream: blobs are read from it with
	// leader gets, not nats.go's consumer-based Get (an ephemeral
	// consumer can be placed on a replica that is down, and then waits).
	blobs jetstream.Stream
}

var (
	_ files.Meta    = fileMeta{}
	_ files.Content = (*Files)(nil)
	_ files.Sweeper = (*Files)(nil)
	_ files.Cache   = (*Files)(nil)
)

// OpenFiles creates the file assets when they are missing (every node
// does it at start) and returns the file store of s.
func OpenFiles(ctx context.Context, s *Store, o FilesOptions) (*Files, error) {
	if o.Dir == "" {
		return nil, errors.New("jetstore: FilesOptions.Dir is required")
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	f := &Files{s: s, o: o}
	r := s.opts.Replicas
	err := retry(ctx, func(ctx context.Context) (err error) {
		if f.kvs, err = s.js.CreateOrUpdateStream(ctx, filesKVConfig(r)); err != nil {
			return err
		}
		if f.kv, err = s.js.KeyValue(ctx, FilesBucket); err != nil {
			return err
		}
		if f.up, err = s.js.CreateOrUpdateStream(ctx, uploadConfig(r)); err != nil {
			return err
		}
		// The object store's stream as nats.go makes it, but with reads
		// from the leader: a blob committed on one node is found on all.
		if f.blobs, err = s.js.CreateOrUpdateStream(ctx, blobConfig(r)); err != nil {
			return err
		}
		f.obs, err = s.js.ObjectStore(ctx, BlobBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstore: files: %w", err)
	}
	return f, nil
}

// filesKVConfig is the stream of the bucket tern-files: a KV bucket
// (history 1) whose reads go to the leader, taking atomic batches.
func filesKVConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: "KV_" + FilesBucket, Subjects: []string{"$KV." + FilesBucket + ".>"},
		MaxMsgsPerSubject: 1, MaxBytes: -1, MaxMsgSize: -1, MaxMsgs: -1, MaxConsumers: -1,
		Storage: jetstream.FileStorage, Replicas: replicas,
		AllowRollup: true, DenyDelete: true, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardNew,
		AllowDirect: false, AllowAtomicPublish: true,
	}
}

// uploadConfig is the stream of uploads in progress: tern-up.<fid>.t
// holds the pieces of an in-order (tus) upload, each with its offset;
// tern-up.<fid>.c.<i> chunk i of a chunked (MQTT) upload.
func uploadConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: UploadStream, Subjects: []string{"tern-up.>"},
		Storage: jetstream.FileStorage, Replicas: replicas,
		MaxMsgs: -1, MaxBytes: -1, MaxMsgsPerSubject: -1, Discard: jetstream.DiscardNew,
		AllowDirect: false,
	}
}

func blobConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:     "OBJ_" + BlobBucket,
		Subjects: []string{"$O." + BlobBucket + ".C.>", "$O." + BlobBucket + ".M.>"},
		MaxBytes: -1, Storage: jetstream.FileStorage, Replicas: replicas,
		Discard: jetstream.DiscardNew, AllowRollup: true, AllowDirect: false,
	}
}

// Meta returns the files.Meta port.
func (f *Files) Meta() files.Meta { return fileMeta{f} }

// Keys.
func kvSubj(key string) string       { return "$KV." + FilesBucket + "." + key }
func fileKey(fid string) string      { return "f." + tok(fid) }
func usageKey(owner string) string   { return "u." + tok(owner) }
func blobKey(h string) string        { return "o." + tok(h) }
func hashKey(owner, h string) string { return "h." + tok(owner) + "." + tok(h) }
func pendKey(fl *files.File) string {
	return "p." + fmt.Sprintf("%020d", uint64(fl.Since().UnixNano())) + "." + tok(fl.FID)
}

// fileRec is the record f.<fid>.
type fileRec struct {
	files.File
	Refs []string `json:"refs,omitempty"`
}

// blobRec is the record o.<h>.
type blobRec struct {
	// Obj is the object holding the content; "" until a commit stores it.
	Obj string `json:"obj,omitempty"`
	// Users are the committed files with this content.
	Users []string `json:"users,omitempty"`
	// T is when a commit last touched it (unix ns).
	T int64 `json:"t"`
}

const kvOp = "KV-Operation"

// kvGet reads key from the bucket's leader; a deleted key is ErrNotFound
// with seq set to what a compare-and-set must expect.
func (f *Files) kvGet(key string) (rec, error) {
	var m *jetstream.RawStreamMsg
	err := f.s.do(func(ctx context.Context) (err error) {
		m, err = f.kvs.GetLastMsgForSubject(ctx, kvSubj(key))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return rec{subj: kvSubj(key)}, ErrNotFound
	}
	if err != nil {
		return rec{}, fmt.Errorf("jetstore: get %s: %w", key, err)
	}
	r := rec{subj: m.Subject, seq: m.Sequence, data: m.Data}
	if op := m.Header.Get(kvOp); m.Header != nil && (op == "DEL" || op == "PURGE") {
		return r, ErrNotFound
	}
	return r, nil
}

func kvPut(key string, data []byte, expect *uint64) msg {
	return msg{subj: kvSubj(key), data: data, expect: expect}
}

func kvDel(key string, expect *uint64) msg {
	return msg{subj: kvSubj(key), hdr: nats.Header{kvOp: []string{"DEL"}}, expect: expect}
}

// ctx bounds a long request (a listing, a blob's copy) by d, and ends it
// when the node starts shutting down: a collector's round or a download
// never holds up Close waiting for a quorum that is gone.
func (f *Files) ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return f.watch(context.WithTimeout(context.Background(), d))
}

// ctxNoDeadline is ctx whose end after d is a cancellation, not a
// deadline: nats.go's object store Put bounds each chunk's publish by the
// JetStream timeout only when its context has no deadline, and without
// that bound a chunk whose answer never comes (a leader died, or none was
// elected yet) holds the Put until d.
func (f *Files) ctxNoDeadline(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := f.watch(context.WithCancel(context.Background()))
	t := time.AfterFunc(d, cancel)
	return ctx, func() {
		t.Stop()
		cancel()
	}
}

// watch cancels ctx when the node starts shutting down.
func (f *Files) watch(ctx context.Context, cancel context.CancelFunc) (context.Context, context.CancelFunc) {
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.s.stop:
				cancel()
				return
			case <-tick.C:
				if f.s.closing.Load() {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}

// keys lists the bucket's keys matching filter (each once).
func (f *Files) keys(filter string) ([]string, error) {
	ctx, cancel := f.ctx(time.Minute)
	defer cancel()
	l, err := f.kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jetstore: keys %s: %w", filter, err)
	}
	defer l.Stop()
	seen := map[string]bool{}
	var out []string
	for k := range l.Keys() {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("jetstore: keys %s: %w", filter, err)
	}
	return out, nil
}

// atomically commits the batch build makes from what it reads, building
// it again from a fresh read while it loses a compare-and-set (or its
// answer was lost: build must then find its own write done). build
// returns no messages when there is nothing to write.
func (f *Files) atomically(build func() ([]msg, error)) error {
	for attempt := 0; ; attempt++ {
		if f.s.closed.Load() {
			return ErrClosed
		}
		b, err := build()
		if err != nil || len(b) == 0 {
			return err
		}
		_, err = f.s.publish(nuid.Next(), b, func() {})
		if err == nil {
			return nil
		}
		if !errors.Is(err, errConflict) && !errors.Is(err, errLost) {
			return err
		}
		if attempt >= maxAttempts {
			return ErrContention
		}
		if !f.s.backoff(attempt) {
			return ErrClosed
		}
	}
}

// maxFID bounds the fids looked up: every fid is a ULID (26
// characters); a longer one from a client (a tus URL, an RPC) would only
// make a subject NATS refuses.
const maxFID = 64

func (f *Files) file(fid string) (fileRec, rec, error) {
	var fr fileRec
	if fid == "" || len(fid) > maxFID {
		return fr, rec{}, files.ErrNotFound
	}
	r, err := f.kvGet(fileKey(fid))
	if errors.Is(err, ErrNotFound) {
		return fr, r, files.ErrNotFound
	}
	if err != nil {
		return fr, r, err
	}
	if err := json.Unmarshal(r.data, &fr); err != nil {
		return fr, r, fmt.Errorf("jetstore: file %s: %w", fid, err)
	}
	return fr, r, nil
}

func (f *Files) usage(owner string) (int64, rec, error) {
	r, err := f.kvGet(usageKey(owner))
	if errors.Is(err, ErrNotFound) {
		return 0, r, nil
	}
	if err != nil {
		return 0, r, err
	}
	n, err := strconv.ParseInt(string(r.data), 10, 64)
	if err != nil {
		return 0, r, fmt.Errorf("jetstore: usage of %s: %w", owner, err)
	}
	return n, r, nil
}

func (f *Files) blob(h string) (blobRec, rec, error) {
	var br blobRec
	r, err := f.kvGet(blobKey(h))
	if err != nil {
		return br, r, err
	}
	if err := json.Unmarshal(r.data, &br); err != nil {
		return br, r, fmt.Errorf("jetstore: blob %s: %w", h, err)
	}
	return br, r, nil
}

// hashFile adds (or removes) fid to the owner's files with content h:
// the message that does it, or none.
func (f *Files) hashFile(owner, h, fid string, add bool) ([]msg, error) {
	var fids []string
	r, err := f.kvGet(hashKey(owner, h))
	switch {
	case err == nil:
		if err := json.Unmarshal(r.data, &fids); err != nil {
			return nil, fmt.Errorf("jetstore: files of %s with %s: %w", owner, h, err)
		}
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	if slices.Contains(fids, fid) == add {
		return nil, nil
	}
	if add {
		fids = append(fids, fid)
	} else {
		fids = slices.DeleteFunc(fids, func(x string) bool { return x == fid })
	}
	if len(fids) == 0 {
		return []msg{kvDel(hashKey(owner, h), exp(r.seq))}, nil
	}
	data, err := json.Marshal(fids)
	if err != nil {
		return nil, err
	}
	return []msg{kvPut(hashKey(owner, h), data, exp(r.seq))}, nil
}

// blobUser adds (or removes) fid to the files of blob h: the message
// that does it, or none.
func (f *Files) blobUser(h, fid string, add bool) ([]msg, error) {
	br, r, err := f.blob(h)
	switch {
	case errors.Is(err, ErrNotFound) && add:
		br = blobRec{T: f.o.Now().UnixNano()}
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	has := slices.Contains(br.Users, fid)
	if has == add {
		return nil, nil
	}
	if add {
		br.Users = append(br.Users, fid)
	} else {
		br.Users = slices.DeleteFunc(br.Users, func(u string) bool { return u == fid })
	}
	data, err := json.Marshal(br)
	if err != nil {
		return nil, err
	}
	return []msg{kvPut(blobKey(h), data, exp(r.seq))}, nil
}

// fileMeta is files.Meta on the bucket.
type fileMeta struct{ f *Files }

func (m fileMeta) Create(fl files.File, quota int64) error {
	data, err := json.Marshal(fileRec{File: fl})
	if err != nil {
		return err
	}
	f := m.f
	return f.atomically(func() ([]msg, error) {
		_, r, err := f.file(fl.FID)
		if err == nil {
			if bytes.Equal(r.data, data) {
				return nil, nil // a retry of a commit whose answer was lost
			}
			return nil, files.ErrExists
		}
		if !errors.Is(err, files.ErrNotFound) {
			return nil, err
		}
		used, ur, err := f.usage(fl.Owner)
		if err != nil {
			return nil, err
		}
		if quota >= 0 && used+fl.Size > quota {
			return nil, files.ErrQuota
		}
		b := []msg{
			kvPut(fileKey(fl.FID), data, exp(r.seq)),
			kvPut(usageKey(fl.Owner), strconv.AppendInt(nil, used+fl.Size, 10), exp(ur.seq)),
			kvPut(pendKey(&fl), nil, nil),
		}
		if fl.Hash != "" {
			hm, err := f.hashFile(fl.Owner, fl.Hash, fl.FID, true)
			if err != nil {
				return nil, err
			}
			b = append(b, hm...)
		}
		return b, nil
	})
}

func (m fileMeta) Get(fid string) (files.File, error) {
	fr, _, err := m.f.file(fid)
	return fr.File, err
}

func (m fileMeta) ByHash(owner, h string) (files.File, error) {
	var fids []string
	r, err := m.f.kvGet(hashKey(owner, h))
	if errors.Is(err, ErrNotFound) {
		return files.File{}, files.ErrNotFound
	}
	if err != nil {
		return files.File{}, err
	}
	if err := json.Unmarshal(r.data, &fids); err != nil {
		return files.File{}, fmt.Errorf("jetstore: files of %s with %s: %w", owner, h, err)
	}
	// fids are ULIDs: the greatest is the newest file.
	slices.Sort(fids)
	for i := len(fids) - 1; i >= 0; i-- {
		fl, err := m.Get(fids[i])
		if !errors.Is(err, files.ErrNotFound) {
			return fl, err
		}
	}
	return files.File{}, files.ErrNotFound
}

func (m fileMeta) Update(fl files.File) error {
	f := m.f
	return f.atomically(func() ([]msg, error) {
		old, r, err := f.file(fl.FID)
		if err != nil {
			return nil, err
		}
		nf := fl
		nf.Owner, nf.Size, nf.Created = old.Owner, old.Size, old.Created
		data, err := json.Marshal(fileRec{File: nf, Refs: old.Refs})
		if err != nil {
			return nil, err
		}
		b := []msg{kvPut(fileKey(nf.FID), data, exp(r.seq))}
		if old.Hash != nf.Hash {
			for _, e := range []struct {
				h   string
				add bool
			}{{old.Hash, false}, {nf.Hash, true}} {
				if e.h == "" {
					continue
				}
				hm, err := f.hashFile(nf.Owner, e.h, nf.FID, e.add)
				if err != nil {
					return nil, err
				}
				b = append(b, hm...)
			}
		}
		oldUse := old.IsCommitted() && old.Hash != ""
		newUse := nf.IsCommitted() && nf.Hash != ""
		if oldUse && (!newUse || old.Hash != nf.Hash) {
			u, err := f.blobUser(old.Hash, nf.FID, false)
			if err != nil {
				return nil, err
			}
			b = append(b, u...)
		}
		if newUse && (!oldUse || old.Hash != nf.Hash) {
			u, err := f.blobUser(nf.Hash, nf.FID, true)
			if err != nil {
				return nil, err
			}
			b = append(b, u...)
		}
		if len(old.Refs) == 0 && !old.Since().Equal(nf.Since()) {
			b = append(b, kvDel(pendKey(&old.File), nil), kvPut(pendKey(&nf), nil, nil))
		}
		return b, nil
	})
}

func (m fileMeta) Delete(fid string) error {
	f := m.f
	return f.atomically(func() ([]msg, error) {
		old, r, err := f.file(fid)
		if errors.Is(err, files.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		used, ur, err := f.usage(old.Owner)
		if err != nil {
			return nil, err
		}
		b := []msg{
			kvDel(fileKey(fid), exp(r.seq)),
			kvPut(usageKey(old.Owner), strconv.AppendInt(nil, max(used-old.Size, 0), 10), exp(ur.seq)),
		}
		if len(old.Refs) == 0 {
			b = append(b, kvDel(pendKey(&old.File), nil))
		}
		if old.Hash != "" {
			hm, err := f.hashFile(old.Owner, old.Hash, fid, false)
			if err != nil {
				return nil, err
			}
			b = append(b, hm...)
		}
		if old.IsCommitted() && old.Hash != "" {
			u, err := f.blobUser(old.Hash, fid, false)
			if err != nil {
				return nil, err
			}
			b = append(b, u...)
		}
		return b, nil
	})
}

func (m fileMeta) Usage(owner string) (int64, error) {
	n, _, err := m.f.usage(owner)
	return n, err
}

func (m fileMeta) AddRef(fid, ref string) error {
	f := m.f
	return f.atomically(func() ([]msg, error) {
		old, r, err := f.file(fid)
		if err != nil || slices.Contains(old.Refs, ref) {
			return nil, err
		}
		nr := old
		nr.Refs = append(slices.Clone(old.Refs), ref)
		data, err := json.Marshal(nr)
		if err != nil {
			return nil, err
		}
		b := []msg{kvPut(fileKey(fid), data, exp(r.seq))}
		if len(old.Refs) == 0 {
			b = append(b, kvDel(pendKey(&old.File), nil))
		}
		return b, nil
	})
}

func (m fileMeta) RemoveRef(fid, ref string) (int, error) {
	f := m.f
	var left int
	err := f.atomically(func() ([]msg, error) {
		left = 0
		old, r, err := f.file(fid)
		if errors.Is(err, files.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		nr := old
		nr.Refs = slices.DeleteFunc(slices.Clone(old.Refs), func(x string) bool { return x == ref })
		left = len(nr.Refs)
		if left == len(old.Refs) {
			return nil, nil // not a reference of fid
		}
		data, err := json.Marshal(nr)
		if err != nil {
			return nil, err
		}
		b := []msg{kvPut(fileKey(fid), data, exp(r.seq))}
		if left == 0 {
			b = append(b, kvPut(pendKey(&old.File), nil, nil))
		}
		return b, nil
	})
	return left, err
}

func (m fileMeta) Refs(fid string) ([]string, error) {
	fr, _, err := m.f.file(fid)
	if errors.Is(err, files.ErrNotFound) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	refs := slices.Clone(fr.Refs)
	slices.Sort(refs)
	if refs == nil {
		refs = []string{}
	}
	return refs, nil
}

// RefsAfter lists every file record and reads those from fid on: a walk
// of all references reads each record once per page (the collector's,
// once per sweep).
func (m fileMeta) RefsAfter(fid, ref string, max int) ([]files.FileRef, error) {
	fids, err := m.f.fids()
	if err != nil {
		return nil, err
	}
	var out []files.FileRef
	for _, id := range fids {
		if id < fid {
			continue
		}
		refs, err := m.Refs(id)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if id == fid && r <= ref {
				continue
			}
			out = append(out, files.FileRef{FID: id, Ref: r})
			if len(out) == max {
				return out, nil
			}
		}
	}
	return out, nil
}

// fids lists every file, in order.
func (f *Files) fids() ([]string, error) {
	ks, err := f.keys("f.*")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		fid, err := untok(strings.TrimPrefix(k, "f."))
		if err != nil {
			return nil, err
		}
		out = append(out, fid)
	}
	slices.Sort(out)
	return out, nil
}

func (m fileMeta) BlobInUse(h string) (bool, error) {
	br, _, err := m.f.blob(h)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return len(br.Users) > 0, err
}

func (m fileMeta) Pending(before time.Time, max int) ([]files.File, error) {
	ks, err := m.f.keys("p.*.*")
	if err != nil {
		return nil, err
	}
	type pend struct {
		since uint64
		fid   string
	}
	limit := uint64(before.UnixNano())
	var ps []pend
	for _, k := range ks {
		since, fid, err := parsePend(k)
		if err != nil {
			return nil, err
		}
		if since < limit {
			ps = append(ps, pend{since, fid})
		}
	}
	slices.SortFunc(ps, func(a, b pend) int {
		if c := cmpU64(a.since, b.since); c != 0 {
			return c
		}
		return strings.Compare(a.fid, b.fid)
	})
	var out []files.File
	for _, p := range ps {
		if len(out) == max {
			break
		}
		fl, err := m.Get(p.fid)
		if errors.Is(err, files.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, fl)
	}
	return out, nil
}

// parsePend reads a key made by pendKey.
func parsePend(k string) (since uint64, fid string, err error) {
	parts := strings.SplitN(k, ".", 3)
	if len(parts) != 3 || parts[0] != "p" {
		return 0, "", fmt.Errorf("jetstore: bad pending key %q", k)
	}
	if since, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return 0, "", fmt.Errorf("jetstore: bad pending key %q: %w", k, err)
	}
	fid, err = untok(parts[2])
	return since, fid, err
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

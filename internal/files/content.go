package files

import (
	"io"
	"time"
)

// Content keeps the bytes of files: the parts of uploads in progress (by
// fid) and committed content (blobs, by SHA-256). It is a port: Disk
// implements it under {data}/files for a single node, internal/jetstore
// on JetStream for a cluster; filestest.RunContent is its conformance
// suite.
//
// A write is durable when it returns. The Service checks the metadata
// first (who owns fid, whether it is committed, its size and chunk size)
// and on one node serialises the calls for one fid, and for one hash;
// an implementation shared by several nodes must stay correct when two
// nodes race (JetStream's compare-and-set does that). Call order for an
// upload: NewPart, then WriteChunk/ClearChunks (chunked, f.Chunk > 0) or
// Append (in order, f.Chunk == 0), then OpenPart to hash and sniff it,
// then Commit; RemovePart drops an upload at any point.
type Content interface {
	// NewPart creates the empty part of upload f.
	NewPart(f File) error
	// WriteChunk stores chunk i of chunked upload f (its bytes go at
	// i×f.Chunk). Storing a chunk again is not an error. ErrNotFound:
	// the part is gone (committed or removed meanwhile).
	WriteChunk(f File, i int, data []byte) error
	// Have returns one byte per chunk of chunked upload f, 1 where the
	// chunk is stored. ErrNotFound: the part is gone (an implementation
	// that cannot tell answers as for an empty part; the Service reads
	// the file record first).
	Have(f File) ([]byte, error)
	// ClearChunks forgets every chunk of chunked upload f.
	ClearChunks(f File) error
	// Append stores r's bytes, at most max of them, at offset of in-order
	// upload f, which must be how many are stored (ErrOffset otherwise,
	// also when another writer appended meanwhile), and returns how many
	// it stored: those count even when r fails midway (a cut
	// connection). ErrNotFound: the part is gone.
	Append(f File, offset int64, r io.Reader, max int64) (int64, error)
	// Appended returns how many bytes of in-order upload f are stored.
	// ErrNotFound: the part is gone.
	Appended(f File) (int64, error)
	// OpenPart reads the content of complete upload f from its start.
	// ErrNotFound: the part is gone.
	OpenPart(f File) (io.ReadCloser, error)
	// Commit makes complete upload f the blob h (or drops its bytes when
	// blob h exists already) and removes the part.
	Commit(f File, h string) error
	// RemovePart removes the part of upload f; absent is not an error.
	RemovePart(f File) error
	// OpenBlob opens blob h; ErrNotFound when there is none.
	OpenBlob(h string) (Blob, error)
	// RemoveBlob removes blob h, which no committed file uses any more
	// (Meta.BlobInUse); absent is not an error. A shared implementation
	// may leave it to its Sweep.
	RemoveBlob(h string) error
}

// Blob is the content of a committed file: seekable for HTTP ranges,
// readable at offsets for MQTT chunks.
type Blob interface {
	io.ReadSeeker
	io.ReaderAt
	io.Closer
}

// Sweeper is a Content with housekeeping of its own, run by the
// collector on the node whose turn it is (Options.Turn): a shared store
// removes there the blobs and parts nothing uses any more. inUse is
// Meta.BlobInUse. It returns how many blobs went.
type Sweeper interface {
	Sweep(now time.Time, inUse func(h string) (bool, error)) (int, error)
}

// Cache is a Content that keeps node-local copies of shared blobs:
// Prune, run by every node's collector, drops the copies of blobs no
// committed file uses any more, and returns how many went.
type Cache interface {
	Prune(inUse func(h string) (bool, error)) (int, error)
}

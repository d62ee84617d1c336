package files

import (
	"errors"
	"time"
)

// File is the metadata of one file: an upload in progress until Committed
// is set, then a committed, immutable file whose content is the blob Hash.
type File struct {
	FID   string `json:"fid"`
	Owner string `json:"o"`
	// Name is the file name the uploader gave (n).
	Name string `json:"n,omitempty"`
	// Size is the exact size in bytes (z).
	Size int64 `json:"z"`
	// Hash is the lowercase hex SHA-256 of the content (h): declared by an
	// MQTT upload (checked at commit), computed at commit for a tus one.
	Hash string `json:"h,omitempty"`
	// CT is the content type: as declared until the commit, then what the
	// server sniffed from the bytes.
	CT string `json:"ct,omitempty"`
	// W and H are the pixel size of an image (0 otherwise).
	W int `json:"w,omitempty"`
	H int `json:"hh,omitempty"`
	// Chunk is the chunk size of an MQTT upload; 0 for a tus upload,
	// whose bytes arrive in order.
	Chunk int `json:"chunk,omitempty"`
	// Created is when the upload started; Committed when it was committed
	// (zero before).
	Created   time.Time `json:"cr"`
	Committed time.Time `json:"cm,omitzero"`
}

// IsCommitted reports whether the upload has been committed.
func (f *File) IsCommitted() bool { return !f.Committed.IsZero() }

// Chunks is the number of chunks of an MQTT upload.
func (f *File) Chunks() int {
	if f.Chunk <= 0 {
		return 0
	}
	return int((f.Size + int64(f.Chunk) - 1) / int64(f.Chunk))
}

// Since is when the file started to wait for its first reference: the
// collector removes it once that is longer ago than the expiry.
func (f *File) Since() time.Time {
	if f.IsCommitted() {
		return f.Committed
	}
	return f.Created
}

// Errors of the Meta port.
var (
	ErrNotFound = errors.New("files: not found")
	ErrExists   = errors.New("files: already exists")
	ErrQuota    = errors.New("files: quota exceeded")
)

// Meta stores file metadata, per-user usage and references. It is a port:
// internal/store implements it over Badger, filestest holds the
// conformance suite (and an in-memory implementation). All methods are
// safe for concurrent use; every method is one atomic step.
//
// References are opaque strings chosen by the caller: "m:{event id}" for
// a message attaching the file; legal holds will add their own. A file
// without references is "pending" since File.Since(): Pending lists them
// oldest first so the collector can remove expired ones.
type Meta interface {
	// Create stores a new file and adds its Size to the owner's usage,
	// refusing with ErrQuota when the usage would exceed quota (quota < 0:
	// no limit) and ErrExists when the fid is taken. A file with a Hash is
	// found by ByHash afterwards.
	Create(f File, quota int64) error
	// Get returns the file fid or ErrNotFound.
	Get(fid string) (File, error)
	// ByHash returns the owner's newest file with content hash h, or
	// ErrNotFound.
	ByHash(owner, h string) (File, error)
	// Update replaces the record of an existing file (ErrNotFound
	// otherwise); Owner, Size and Created do not change. Setting Hash and
	// Committed registers the file as a user of the blob Hash.
	Update(f File) error
	// Delete removes the file, its references and its hash entries, and
	// gives its Size back to the owner's usage. Deleting a missing file
	// is not an error.
	Delete(fid string) error
	// Usage returns the bytes counted against the owner's quota.
	Usage(owner string) (int64, error)
	// AddRef adds reference ref to fid (idempotent); ErrNotFound when the
	// file does not exist.
	AddRef(fid, ref string) error
	// RemoveRef removes ref (absent is not an error) and returns how many
	// references are left.
	RemoveRef(fid, ref string) (left int, err error)
	// Refs lists the references of fid.
	Refs(fid string) ([]string, error)
	// BlobInUse reports whether a committed file still has content h.
	BlobInUse(h string) (bool, error)
	// Pending returns up to max files without references whose Since is
	// before before, oldest first.
	Pending(before time.Time, max int) ([]File, error)
	// RefsAfter returns up to max references in (fid, ref) order after
	// the reference (fid, ref) given (both "" to start): the collector
	// walks them in pages.
	RefsAfter(fid, ref string, max int) ([]FileRef, error)
}

// FileRef is one reference to a file.
type FileRef struct {
	FID, Ref string
}

package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Disk is the Content of a single node: the file tree under {data}/files
// (the layout in the package comment). Parts are written in place and
// fsynced; a complete part is renamed into the blob tree.
type Disk struct {
	dir string
}

var _ Content = (*Disk)(nil)

// NewDisk opens the file tree in dir, creating its folders.
func NewDisk(dir string) (*Disk, error) {
	for _, d := range []string{"blobs", "up"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
	}
	return &Disk{dir: dir}, nil
}

func (d *Disk) partPath(fid string) string { return filepath.Join(d.dir, "up", fid) }
func (d *Disk) havePath(fid string) string { return filepath.Join(d.dir, "up", fid+".have") }

// BlobPath is where blob h lives (h is validated hex).
func (d *Disk) BlobPath(h string) string { return BlobPath(d.dir, h) }

// BlobPath is where the blob with hash h (validated hex) lives under
// the file tree dir: blobs/ab/cd/abcd…; a cluster node keeps its copies
// of shared blobs there too.
func BlobPath(dir, h string) string { return filepath.Join(dir, "blobs", h[:2], h[2:4], h) }

// ThumbPath is where the thumbnail of blob h lives under dir.
func ThumbPath(dir, h string) string { return filepath.Join(dir, "thumbs", h[:2], h+".jpg") }

// NewPart makes the (sparse) part file and, for a chunked upload, its
// have map.
func (d *Disk) NewPart(f File) error {
	if f.Chunk == 0 {
		return truncateNew(d.partPath(f.FID), 0) // bytes are appended in order
	}
	if err := truncateNew(d.partPath(f.FID), f.Size); err != nil {
		return err
	}
	if err := truncateNew(d.havePath(f.FID), int64(f.Chunks())); err != nil {
		return errors.Join(err, rmIfExists(d.partPath(f.FID)))
	}
	return nil
}

// WriteChunk writes and fsyncs the chunk, then marks it in the have
// map; losing the mark (power loss) only makes the device send that
// chunk again.
func (d *Disk) WriteChunk(f File, i int, data []byte) error {
	part, err := os.OpenFile(d.partPath(f.FID), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	_, werr := part.WriteAt(data, int64(i)*int64(f.Chunk))
	serr := part.Sync()
	if err := errors.Join(werr, serr, part.Close()); err != nil {
		return err
	}
	have, err := os.OpenFile(d.havePath(f.FID), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	_, werr = have.WriteAt([]byte{1}, int64(i))
	return errors.Join(werr, have.Close())
}

// Have reads the have map.
func (d *Disk) Have(f File) ([]byte, error) {
	b, err := os.ReadFile(d.havePath(f.FID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return b, err
}

// ClearChunks zeroes the have map.
func (d *Disk) ClearChunks(f File) error {
	return os.WriteFile(d.havePath(f.FID), make([]byte, f.Chunks()), 0o600)
}

// Append appends to the part file and fsyncs it.
func (d *Disk) Append(f File, offset int64, r io.Reader, max int64) (int64, error) {
	part, err := os.OpenFile(d.partPath(f.FID), os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	st, err := part.Stat()
	if err != nil {
		return 0, errors.Join(err, part.Close())
	}
	if st.Size() != offset {
		return 0, errors.Join(ErrOffset, part.Close())
	}
	n, cerr := io.Copy(part, io.LimitReader(r, max))
	serr := part.Sync()
	return n, errors.Join(cerr, serr, part.Close())
}

// Appended is the part file's size.
func (d *Disk) Appended(f File) (int64, error) {
	st, err := os.Stat(d.partPath(f.FID))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// OpenPart opens the part file.
func (d *Disk) OpenPart(f File) (io.ReadCloser, error) {
	r, err := os.Open(d.partPath(f.FID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return r, err
}

// Commit renames the part into the blob tree (or drops it when the blob
// exists) and removes the have map.
func (d *Disk) Commit(f File, h string) error {
	part, blob := d.partPath(f.FID), d.BlobPath(h)
	if _, err := os.Stat(blob); err == nil {
		if err := os.Remove(part); err != nil {
			return err
		}
	} else {
		dir := filepath.Dir(blob)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := os.Rename(part, blob); err != nil {
			return err
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return rmIfExists(d.havePath(f.FID))
}

// RemovePart removes the part file and the have map.
func (d *Disk) RemovePart(f File) error {
	return errors.Join(rmIfExists(d.partPath(f.FID)), rmIfExists(d.havePath(f.FID)))
}

// OpenBlob opens the blob file.
func (d *Disk) OpenBlob(h string) (Blob, error) {
	r, err := os.Open(d.BlobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// RemoveBlob removes the blob file.
func (d *Disk) RemoveBlob(h string) error { return rmIfExists(d.BlobPath(h)) }

// truncateNew creates path, which must not exist, with size zero bytes.
func truncateNew(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func rmIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

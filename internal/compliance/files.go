package compliance

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/im"
)

// ErrNoFiles: this process has no file storage to export from.
var ErrNoFiles = errors.New("compliance: no file storage in this process")

// Files is where the file export reads: the file records and the
// content of a committed file (*files.Service's Meta and Read: on one
// node its blob on disk, in a cluster the shared one).
type Files struct {
	Meta files.Meta
	Open func(f files.File) (io.ReadCloser, error)
}

// FileEntry is one line of files.jsonl, the last entry of a file export.
type FileEntry struct {
	FID     string `json:"fid"`
	Name    string `json:"name,omitempty"`
	CT      string `json:"ct,omitempty"`
	Size    int64  `json:"size,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Missing bool   `json:"missing,omitempty"` // expired, collected or never committed
}

// ExportFiles writes a tar of the files the events q selects attach:
// files/{fid} with the content of each, then files.jsonl describing
// every one (missing ones too). It reads the events again to collect the
// file ids (memory grows with distinct files, not with events), in fid
// order, so the same data gives the same tar.
func (s *Service) ExportFiles(a Actor, w io.Writer, q im.ExportQuery) (int, error) {
	n, err := s.exportFiles(w, q)
	s.audit(a, audit.Entry{Type: audit.Export, UID: q.UID, Reason: fmt.Sprintf("files=%d", n),
		Target: fmt.Sprintf("files cv=%s user=%s since=%d until=%d", q.CV, q.UID, q.Since, q.Until)}, err)
	return n, err
}

func (s *Service) exportFiles(w io.Writer, q im.ExportQuery) (int, error) {
	if err := CheckQuery(q); err != nil {
		return 0, err
	}
	if s.Files == nil {
		return 0, ErrNoFiles
	}
	seen := map[string]bool{}
	var fids []string
	err := s.Store.Export(q, func(ev *im.Event) error {
		for _, at := range ev.Att {
			if at.FID != "" && !seen[at.FID] {
				seen[at.FID] = true
				fids = append(fids, at.FID)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	slices.Sort(fids)
	tw := tar.NewWriter(w)
	index := make([]FileEntry, 0, len(fids))
	written := 0
	for _, fid := range fids {
		e := FileEntry{FID: fid, Missing: true}
		f, err := s.Files.Meta.Get(fid)
		switch {
		case errors.Is(err, files.ErrNotFound):
		case err != nil:
			return written, err
		case f.IsCommitted() && f.Hash != "":
			e = FileEntry{FID: fid, Name: f.Name, CT: f.CT, Size: f.Size, SHA256: f.Hash}
			if err := s.addBlob(tw, f); errors.Is(err, os.ErrNotExist) {
				e.Missing = true
			} else if err != nil {
				return written, err
			} else {
				written++
			}
		}
		index = append(index, e)
	}
	var b []byte
	for _, e := range index {
		line, err := json.Marshal(e)
		if err != nil {
			return written, err
		}
		b = append(append(b, line...), '\n')
	}
	if err := tw.WriteHeader(&tar.Header{Name: "files.jsonl", Mode: 0o600, Size: int64(len(b))}); err != nil {
		return written, err
	}
	if _, err := tw.Write(b); err != nil {
		return written, err
	}
	return written, tw.Close()
}

func (s *Service) addBlob(tw *tar.Writer, f files.File) error {
	r, err := s.Files.Open(f)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := tw.WriteHeader(&tar.Header{Name: "files/" + f.FID, Mode: 0o600, Size: f.Size, ModTime: f.Committed}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, r, f.Size); err != nil {
		return fmt.Errorf("file %s: %w", f.FID, err)
	}
	return nil
}

package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"

	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/tern-im/tern/internal/files"
)

// tusStore is tusd's data store over internal/files: an upload's id is
// its fid, its bytes go to the upload file of internal/files, and the
// last PATCH commits it (hash, sniffing, into the blob tree). The caller
// comes from the request context (auth); an upload of someone else is
// "not found".
type tusStore struct {
	files *files.Service
	log   *slog.Logger
}

var (
	_ tusd.DataStore           = (*tusStore)(nil)
	_ tusd.TerminaterDataStore = (*tusStore)(nil)
)

// tusErr turns a refusal of the file service into a tus error response.
func (s *tusStore) tusErr(err error) error {
	var fe *files.Error
	switch {
	case errors.Is(err, files.ErrUnknownFile):
		return tusd.ErrNotFound
	case errors.Is(err, files.ErrOffset):
		return tusd.ErrMismatchOffset
	case errors.As(err, &fe):
		return tusd.NewError("ERR_TERN", fe.Msg, fe.Code)
	}
	s.log.Error("web: tus store", "error", err)
	return err
}

func (s *tusStore) caller(ctx context.Context) (string, error) {
	id, ok := identity(ctx)
	if !ok {
		return "", tusd.NewError("ERR_UNAUTHORIZED", "missing bearer token", http.StatusUnauthorized)
	}
	return id.UID, nil
}

// NewUpload creates an upload of known length; filename and filetype come
// from Upload-Metadata.
func (s *tusStore) NewUpload(ctx context.Context, info tusd.FileInfo) (tusd.Upload, error) {
	uid, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	if info.SizeIsDeferred {
		return nil, tusd.ErrInvalidUploadLength
	}
	f, err := s.files.CreateUpload(uid, info.Size, info.MetaData["filename"], info.MetaData["filetype"])
	if err != nil {
		return nil, s.tusErr(err)
	}
	return &tusUpload{s: s, uid: uid, fid: f.FID}, nil
}

// GetUpload finds the caller's upload id.
func (s *tusStore) GetUpload(ctx context.Context, id string) (tusd.Upload, error) {
	uid, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	f, off, err := s.files.Upload(uid, id)
	if err != nil {
		return nil, s.tusErr(err)
	}
	if !f.IsCommitted() && off == f.Size {
		// Every byte is stored but the commit did not happen: the node
		// that took the last PATCH stopped (cluster mode), or the
		// commit failed. Commit now, so the client finds it complete.
		if _, err := s.files.FinishUpload(uid, id); err != nil {
			return nil, s.tusErr(err)
		}
	}
	return &tusUpload{s: s, uid: uid, fid: id}, nil
}

// AsTerminatableUpload offers the termination extension.
func (s *tusStore) AsTerminatableUpload(u tusd.Upload) tusd.TerminatableUpload {
	return u.(*tusUpload)
}

type tusUpload struct {
	s   *tusStore
	uid string
	fid string
}

func (u *tusUpload) WriteChunk(_ context.Context, offset int64, src io.Reader) (int64, error) {
	n, err := u.s.files.Append(u.uid, u.fid, offset, src)
	if err != nil {
		return n, u.s.tusErr(err)
	}
	return n, nil
}

func (u *tusUpload) GetInfo(context.Context) (tusd.FileInfo, error) {
	f, off, err := u.s.files.Upload(u.uid, u.fid)
	if err != nil {
		return tusd.FileInfo{}, u.s.tusErr(err)
	}
	meta := tusd.MetaData{}
	if f.Name != "" {
		meta["filename"] = f.Name
	}
	if f.CT != "" {
		meta["filetype"] = f.CT
	}
	return tusd.FileInfo{ID: f.FID, Size: f.Size, Offset: off, MetaData: meta}, nil
}

func (u *tusUpload) GetReader(context.Context) (io.ReadCloser, error) {
	return nil, tusd.ErrNotImplemented // downloads: GET /v1/files/{fid}
}

func (u *tusUpload) FinishUpload(context.Context) error {
	if _, err := u.s.files.FinishUpload(u.uid, u.fid); err != nil {
		return u.s.tusErr(err)
	}
	return nil
}

func (u *tusUpload) Terminate(context.Context) error {
	if err := u.s.files.Abort(u.uid, u.fid); err != nil {
		return u.s.tusErr(err)
	}
	return nil
}

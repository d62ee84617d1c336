package files

import (
	"encoding/hex"
	"errors"

	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/service"
)

// Attachments is the IM service's view of the file store (service.Files):
// the attachments of sends and the references of messages to files.
type Attachments struct{ Files *files.Service }

var _ service.Files = Attachments{}

// Attachment returns the attachment for committed file fid if uid may
// read it: 400 for an upload not committed yet, 403 for a file uid may
// not read or that does not exist (told apart from nothing else).
func (a Attachments) Attachment(uid, fid string) (im.Att, error) {
	f, err := a.Files.Get(uid, fid)
	switch {
	case errors.Is(err, files.ErrNotCommitted):
		return im.Att{}, im.ErrFileNotCommitted
	case errors.Is(err, files.ErrUnknownFile):
		return im.Att{}, im.ErrFileNotReadable
	case err != nil:
		return im.Att{}, err
	}
	h, err := hex.DecodeString(f.Hash)
	if err != nil {
		return im.Att{}, err
	}
	return im.Att{FID: f.FID, N: f.Name, Z: f.Size, CT: f.CT, H: h, W: f.W, HH: f.H}, nil
}

// Ref records that ref keeps file fid.
func (a Attachments) Ref(fid, ref string) error { return a.Files.AddRef(fid, ref) }

// Unref drops reference ref of fid; the file goes with its last one.
func (a Attachments) Unref(fid, ref string) error { return a.Files.RemoveRef(fid, ref) }

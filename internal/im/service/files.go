package service

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// Files is what messages with attachments need of the file store
// (PROTOCOL §11). hooks/files implements it over internal/files.
type Files interface {
	// Attachment returns what a message carries for file fid, n z ct h w
	// hh filled in from the committed file, if uid may read it:
	// im.ErrFileNotCommitted (400) or im.ErrFileNotReadable (403)
	// otherwise.
	Attachment(uid, fid string) (im.Att, error)
	// Ref records that ref keeps file fid; Unref drops it, and the file
	// goes with its last reference. Refs are MsgRef(id) for a message
	// attaching the file, and PendingRef while a send is on its way.
	Ref(fid, ref string) error
	Unref(fid, ref string) error
}

// MsgRef is the reference of message id to the files it attaches.
func MsgRef(id ulid.ULID) string { return "m:" + id.String() }

// PendingRef pins the files of a send before it is appended, so that the
// collector cannot take them between the check and the commit; it is
// replaced by MsgRef once the message is committed. If the process dies in
// between, the pin stays until it is older than pinLife (Live).
func PendingRef(d *Device, cmid string, now time.Time) string {
	return "p:" + strconv.FormatInt(now.UnixMilli(), 10) + "/" + d.UID + "/" + d.DID + "/" + cmid
}

// pinLife is how long a pin stands: a send takes milliseconds.
const pinLife = time.Hour

// attachments checks and fills in the attachments of a send and pins
// their files; the returned function, called with the committed append,
// turns the pins into the message's references (or drops them).
func (s *Service) attachments(d *Device, up *codec.Up) (func(a *im.Append, err error) error, error) {
	if len(up.Att) == 0 {
		return func(*im.Append, error) error { return nil }, nil
	}
	if s.o.Files == nil {
		return nil, im.ErrNotImplemented
	}
	atts := make([]im.Att, len(up.Att))
	for i, at := range up.Att {
		if at.FID == "" {
			return nil, im.ErrBadAtt
		}
		a, err := s.o.Files.Attachment(d.UID, at.FID)
		if err != nil {
			return nil, err
		}
		atts[i] = a
	}
	pin := PendingRef(d, up.CMID, s.o.Now())
	var pinned []string
	unpin := func() error {
		var errs []error
		for _, fid := range pinned {
			errs = append(errs, s.o.Files.Unref(fid, pin))
		}
		return errors.Join(errs...)
	}
	for _, a := range atts {
		if err := s.o.Files.Ref(a.FID, pin); err != nil {
			return nil, errors.Join(err, unpin())
		}
		pinned = append(pinned, a.FID)
	}
	up.Att = atts
	return func(a *im.Append, err error) error {
		if err == nil && a.Dup == nil { // a new message: it keeps its files
			for _, fid := range pinned {
				if err := s.o.Files.Ref(fid, MsgRef(a.Event.ID)); err != nil {
					return err // the pin stays: the file is kept
				}
			}
		}
		return unpin()
	}, nil
}

// AvatarRef is the reference of group gid to its avatar's file.
func AvatarRef(gid string) string { return "g:" + gid }

// avatarRefs checks a new avatar (a committed file the caller may read)
// and makes the group reference it instead of the old one, once the
// change is committed.
func (s *Service) avatarRefs(d *Device, t *groupTx, fid string) error {
	old := t.g.Avatar
	if s.o.Files == nil || fid == old {
		return nil
	}
	ref := AvatarRef(t.g.GID)
	if fid != "" {
		if _, err := s.o.Files.Attachment(d.UID, fid); err != nil {
			return err
		}
		if err := s.o.Files.Ref(fid, ref); err != nil {
			return err
		}
	}
	t.committed = func(err error) error {
		switch {
		case err != nil && fid != "":
			return s.o.Files.Unref(fid, ref)
		case err == nil && old != "":
			return s.o.Files.Unref(old, ref)
		}
		return nil
	}
	return nil
}

// detach drops the references of a deleted message to its files.
func (s *Service) detach(target *im.Event) error {
	if s.o.Files == nil {
		return nil
	}
	var errs []error
	for _, a := range target.Att {
		errs = append(errs, s.o.Files.Unref(a.FID, MsgRef(target.ID)))
	}
	return errors.Join(errs...)
}

// Live reports whether a reference to a file still stands: a message
// that exists (not expired with its ttl, not trimmed), a pin younger than
// pinLife. References of other kinds (holds, later) stand.
func (s *Service) Live(ref string) (bool, error) {
	switch {
	case strings.HasPrefix(ref, "m:"):
		id, err := ulid.ParseStrict(ref[2:])
		if err != nil {
			return false, nil
		}
		_, err = s.o.Store.EventByID(id)
		if errors.Is(err, im.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	case strings.HasPrefix(ref, "p:"):
		ms, _, _ := strings.Cut(ref[2:], "/")
		t, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			return false, nil
		}
		return s.o.Now().Sub(time.UnixMilli(t)) < pinLife, nil
	case strings.HasPrefix(ref, "g:"):
		_, err := s.o.Store.Group(ref[2:])
		if errors.Is(err, im.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	return true, nil
}

// MayRead reports whether uid may read a file with references refs
// besides its uploader: a message among them lies in a conversation uid
// may read, inside uid's membership window (PROTOCOL §11).
func (s *Service) MayRead(uid string, refs []string) (bool, error) {
	for _, ref := range refs {
		if gid, ok := strings.CutPrefix(ref, "g:"); ok { // a group's avatar: its members
			_, recs, err := s.o.Relations.Members(gid)
			if errors.Is(err, im.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			if recs[uid].Current() {
				return true, nil
			}
			continue
		}
		idText, ok := strings.CutPrefix(ref, "m:")
		if !ok {
			continue
		}
		id, err := ulid.ParseStrict(idText)
		if err != nil {
			continue
		}
		ev, err := s.o.Store.EventByID(id)
		if errors.Is(err, im.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		c, err := s.readable(uid, ev.CV)
		var refused *im.Error
		if errors.As(err, &refused) {
			continue // not a member, unknown conversation: not this way
		}
		if err != nil {
			return false, err
		}
		if c.window.Contains(ev.Seq) {
			return true, nil
		}
	}
	return false, nil
}

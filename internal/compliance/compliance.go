// Package compliance is the operator side of PROTOCOL §16 shared by the
// admin API and the CLI: per-conversation retention, legal holds and the
// e-discovery export, each validating its arguments and audited. The
// store does the work (im.Compliance); devices reach retention through
// the conv.set RPC of internal/im/service instead.
package compliance

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// Errors: bad arguments (the admin API answers 400).
var (
	ErrBadConv      = errors.New("compliance: cv must be d:{a}:{b} (a < b) or g:{gid}")
	ErrBadRetention = errors.New("compliance: retention must be 0 (the server default) or 1m to 876000h, e.g. 720h or 30d")
	ErrHoldTarget   = errors.New("compliance: a hold needs exactly one of uid and cv")
	ErrBadUID       = errors.New("compliance: bad uid")
	ErrReason       = errors.New("compliance: reason must be at most 1024 bytes of UTF-8")
	ErrBadHoldID    = errors.New("compliance: bad hold id")
	ErrBadTime      = errors.New("compliance: time must be RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or Unix milliseconds")
	ErrTimeRange    = errors.New("compliance: since must be before until")
	// ErrUnknownHold is returned by RemoveHold for an id that is not held.
	ErrUnknownHold = errors.New("compliance: no such hold")
)

// Retention bounds.
const (
	MinRetention = time.Minute
	MaxRetention = 100 * 365 * 24 * time.Hour
	maxReason    = 1024
)

// Service runs the operator's compliance commands on a store.
type Service struct {
	Store im.Compliance
	Audit audit.Logger
	// Files, if set, is where ExportFiles reads file contents.
	Files *Files
}

// New returns a Service; a nil log audits nothing.
func New(st im.Compliance, log audit.Logger) *Service {
	if log == nil {
		log = audit.Discard
	}
	return &Service{Store: st, Audit: log}
}

// Actor is who acts and from where, for the audit log.
type Actor struct {
	By, IP string
}

func (s *Service) audit(a Actor, e audit.Entry, err error) {
	e.By, e.IP, e.OK = a.By, a.IP, err == nil
	if err != nil {
		e.Reason = err.Error()
	}
	s.Audit.Log(e)
}

// CheckConv validates a conversation id.
func CheckConv(cv string) error {
	a, b, gid, ok := im.ParseConv(cv)
	switch {
	case !ok:
		return ErrBadConv
	case gid != "":
		if topics.CheckGID(gid) != nil {
			return ErrBadConv
		}
	case topics.CheckUID(a) != nil || topics.CheckUID(b) != nil:
		return ErrBadConv
	}
	return nil
}

// ParseRetention reads a retention: a Go duration ("720h", "90m") or a
// number of days ("30d"); "0" means the server default.
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return 0, ErrBadRetention
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, ErrBadRetention
		}
	}
	if d != 0 && (d < MinRetention || d > MaxRetention) {
		return 0, ErrBadRetention
	}
	return d, nil
}

// SetRetention sets cv's own retention (0: back to the server default).
func (s *Service) SetRetention(a Actor, cv string, d time.Duration) error {
	err := CheckConv(cv)
	if err == nil && d != 0 && (d < MinRetention || d > MaxRetention) {
		err = ErrBadRetention
	}
	if err == nil {
		err = s.Store.SetRetention(cv, d)
	}
	s.audit(a, audit.Entry{Type: audit.RetentionSet, Target: cv, Reason: d.String()}, err)
	return err
}

// Retention returns cv's own retention (0: the server default).
func (s *Service) Retention(cv string) (time.Duration, error) {
	if err := CheckConv(cv); err != nil {
		return 0, err
	}
	return s.Store.Retention(cv)
}

// AddHold places a hold on a user or a conversation.
func (s *Service) AddHold(a Actor, h im.Hold) (im.Hold, error) {
	var err error
	switch {
	case (h.UID == "") == (h.CV == ""):
		err = ErrHoldTarget
	case h.UID != "" && topics.CheckUID(h.UID) != nil:
		err = ErrBadUID
	case h.CV != "":
		err = CheckConv(h.CV)
	}
	if err == nil && (len(h.Reason) > maxReason || !utf8.ValidString(h.Reason)) {
		err = ErrReason
	}
	h.By = a.By
	if err == nil {
		h, err = s.Store.AddHold(h)
	}
	target := h.CV
	if h.UID != "" {
		target = "user:" + h.UID
	}
	s.audit(a, audit.Entry{Type: audit.HoldAdd, UID: h.UID, Target: strings.TrimSpace(target + " " + h.ID)}, err)
	return h, err
}

// RemoveHold lifts hold id.
func (s *Service) RemoveHold(a Actor, id string) (im.Hold, error) {
	var h im.Hold
	err := checkHoldID(id)
	if err == nil {
		h, err = s.Store.RemoveHold(id)
		if errors.Is(err, im.ErrNotFound) {
			err = ErrUnknownHold
		}
	}
	s.audit(a, audit.Entry{Type: audit.HoldRemove, UID: h.UID, Target: strings.TrimSpace(h.CV + " " + id)}, err)
	return h, err
}

func checkHoldID(id string) error {
	if len(id) != 26 {
		return ErrBadHoldID
	}
	for _, c := range id {
		if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", c) {
			return ErrBadHoldID
		}
	}
	return nil
}

// Holds lists the holds.
func (s *Service) Holds() ([]im.Hold, error) {
	hs, err := s.Store.Holds()
	if hs == nil {
		hs = []im.Hold{}
	}
	return hs, err
}

// ParseTime reads an export bound: RFC 3339, a date (UTC midnight) or
// Unix milliseconds; "" is open (0).
func ParseTime(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 0 {
		return ms, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil && t.UnixMilli() > 0 {
			return t.UnixMilli(), nil
		}
	}
	return 0, ErrBadTime
}

// CheckQuery validates an export query.
func CheckQuery(q im.ExportQuery) error {
	if q.UID != "" && topics.CheckUID(q.UID) != nil {
		return ErrBadUID
	}
	if q.CV != "" {
		if err := CheckConv(q.CV); err != nil {
			return err
		}
	}
	if q.Since > 0 && q.Until > 0 && q.Since >= q.Until {
		return ErrTimeRange
	}
	return nil
}

// Manifest is the last line of an export.
type Manifest struct {
	T      string `json:"t"` // "manifest"
	Count  int    `json:"count"`
	SHA256 string `json:"sha256"` // over every line before the manifest, newlines included
}

// Export writes the events q selects to w as JSON Lines, one stored
// event per line, then the manifest line. It streams: memory does not
// grow with the number of events. A failure midway leaves no manifest,
// so a consumer can tell an incomplete export; running it again gives
// the same lines for the same stored data.
func (s *Service) Export(a Actor, w io.Writer, q im.ExportQuery) (Manifest, error) {
	m := Manifest{T: "manifest"}
	err := CheckQuery(q)
	if err == nil {
		h := sha256.New()
		bw := bufio.NewWriterSize(io.MultiWriter(w, h), 64<<10)
		err = s.Store.Export(q, func(ev *im.Event) error {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			if _, err := bw.Write(append(b, '\n')); err != nil {
				return err
			}
			m.Count++
			return nil
		})
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			m.SHA256 = hex.EncodeToString(h.Sum(nil))
			var b []byte
			if b, err = json.Marshal(m); err == nil {
				_, err = w.Write(append(b, '\n'))
			}
		}
	}
	target := strings.TrimSpace(fmt.Sprintf("cv=%s user=%s since=%d until=%d", q.CV, q.UID, q.Since, q.Until))
	s.audit(a, audit.Entry{Type: audit.Export, UID: q.UID, Target: target,
		Reason: fmt.Sprintf("count=%d sha256=%s", m.Count, m.SHA256)}, err)
	return m, err
}

// VerifyExport checks an export read from r: every line before the last
// is hashed and counted, and the last must be a manifest that matches.
func VerifyExport(r io.Reader) (Manifest, error) {
	v := NewVerifier()
	if _, err := io.Copy(v, r); err != nil {
		return Manifest{}, err
	}
	return v.Result()
}

// Verifier checks an export as it is written through it (io.Writer):
// Result reports whether it ended with a manifest that matches the lines
// before it.
type Verifier struct {
	h    hash.Hash
	n    int
	cur  []byte // the line being written
	last []byte // the last complete line, not hashed yet
	full bool   // last holds a line
}

// NewVerifier returns an empty Verifier.
func NewVerifier() *Verifier { return &Verifier{h: sha256.New()} }

// maxExportLine bounds one line of an export (events are far smaller).
const maxExportLine = 16 << 20

// Write takes the next bytes of the export.
func (v *Verifier) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(v.cur)+len(p) > maxExportLine {
				return 0, errors.New("compliance: export line too long")
			}
			v.cur = append(v.cur, p...)
			break
		}
		v.cur = append(v.cur, p[:i]...)
		p = p[i+1:]
		if v.full {
			v.h.Write(v.last)
			v.h.Write([]byte{'\n'})
			v.n++
		}
		v.last, v.cur, v.full = append(v.last[:0], v.cur...), v.cur[:0], true
	}
	return n, nil
}

// Result checks the export written so far.
func (v *Verifier) Result() (Manifest, error) {
	var m Manifest
	last := v.last
	if len(v.cur) > 0 { // a last line without its newline
		if v.full {
			v.h.Write(v.last)
			v.h.Write([]byte{'\n'})
			v.n++
		}
		last, v.last, v.cur, v.full = v.cur, v.cur, nil, true
	}
	if err := json.Unmarshal(last, &m); err != nil || m.T != "manifest" {
		return m, errors.New("compliance: the export has no manifest line (incomplete)")
	}
	sum := hex.EncodeToString(v.h.Sum(nil))
	if m.Count != v.n || m.SHA256 != sum {
		return m, fmt.Errorf("compliance: manifest says %d lines %s, the export has %d lines %s", m.Count, m.SHA256, v.n, sum)
	}
	return m, nil
}

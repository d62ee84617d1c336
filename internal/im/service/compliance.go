package service

import (
	"context"
	"strings"
	"time"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

// sendConv is the conversation a send to `to` goes to, or "" when `to`
// is malformed (the send fails later with its own error).
func sendConv(uid, to string) string {
	if strings.HasPrefix(to, "d:") || strings.HasPrefix(to, "g:") {
		return to
	}
	if topics.CheckUID(to) != nil || to == uid {
		return ""
	}
	return im.DMConv(uid, to)
}

// inspect runs the content policy once over the text of a send or an
// edit into cv: a block is err 451 (audited dlp.block); otherwise the
// verdict carries the body to store. End-to-end encrypted bodies are
// never inspected.
func (s *Service) inspect(d *Device, cv string, up *codec.Up) (im.Verdict, error) {
	v := im.Verdict{Action: im.DLPAllow, Body: up.B}
	if s.o.Content == nil || cv == "" || up.B == "" || len(up.E2E) > 0 {
		return v, nil
	}
	v, err := s.o.Content.Check(context.Background(), d.UID, cv, up.B)
	if err != nil {
		return v, err
	}
	if v.Action == im.DLPBlock {
		s.o.Audit.Log(audit.Entry{Type: audit.DLPBlock, UID: d.UID, DID: d.DID, OK: true, Reason: v.Rule, Target: cv})
		return v, im.ErrContentPolicy
	}
	return v, nil
}

// flagged audits a committed message the policy flagged.
func (s *Service) flagged(d *Device, v im.Verdict, a *im.Append) {
	if v.Action == im.DLPFlag && a.Committed() {
		s.o.Audit.Log(audit.Entry{Type: audit.DLPFlag, UID: d.UID, DID: d.DID, OK: true, Reason: v.Rule, Target: a.Event.ID.String()})
	}
}

// convSet sets a group conversation's own retention (PROTOCOL §16):
// owners and admins of the group only; 0 returns it to the server
// default. Audited as retention.set.
func (s *Service) convSet(d *Device, a *codec.ConvSetArgs) (any, error) {
	if s.o.Compliance == nil {
		return nil, im.ErrNotImplemented
	}
	if a.Retention == nil {
		return nil, im.ErrBadRetention
	}
	r := *a.Retention
	if r != 0 && (r < codec.MinRetention || r > codec.MaxRetention) {
		return nil, im.ErrBadRetention
	}
	_, _, gid, ok := im.ParseConv(a.CV)
	if !ok {
		return nil, im.ErrBadConv
	}
	if gid == "" {
		return nil, im.ErrGroupOnly
	}
	c, err := s.memberOf(d.UID, a.CV)
	if err != nil {
		return nil, err
	}
	if c.role != im.RoleOwner && c.role != im.RoleAdmin {
		return nil, im.ErrNotAdmin
	}
	err = s.o.Compliance.SetRetention(c.cv, time.Duration(r)*time.Second)
	e := audit.Entry{Type: audit.RetentionSet, UID: d.UID, DID: d.DID, By: d.UID, OK: err == nil, Target: c.cv,
		Reason: (time.Duration(r) * time.Second).String()}
	s.o.Audit.Log(e)
	if err != nil {
		return nil, err
	}
	return codec.ConvSetResult{CV: c.cv, Retention: r}, nil
}

// held reports whether a legal hold covers ev (never without Compliance).
func (s *Service) held(ev *im.Event) (bool, error) {
	if s.o.Compliance == nil {
		return false, nil
	}
	return s.o.Compliance.Held(ev)
}

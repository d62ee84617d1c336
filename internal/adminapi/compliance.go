package adminapi

import (
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tern-im/tern/internal/compliance"
	"github.com/tern-im/tern/internal/im"
)

// Compliance is what the compliance routes need (PROTOCOL §16):
// *compliance.Service.
type Compliance interface {
	SetRetention(a compliance.Actor, cv string, d time.Duration) error
	Retention(cv string) (time.Duration, error)
	AddHold(a compliance.Actor, h im.Hold) (im.Hold, error)
	RemoveHold(a compliance.Actor, id string) (im.Hold, error)
	Holds() ([]im.Hold, error)
	Export(a compliance.Actor, w io.Writer, q im.ExportQuery) (compliance.Manifest, error)
	ExportFiles(a compliance.Actor, w io.Writer, q im.ExportQuery) (int, error)
}

var _ Compliance = (*compliance.Service)(nil)

// RetentionBody is the body and reply of /admin/v1/retention/{cv}:
// Retention is a Go duration or days ("720h", "30d"); "0" is the server
// default. Seconds is the reply's value in seconds.
type RetentionBody struct {
	CV        string `json:"cv,omitempty"`
	Retention string `json:"retention"`
	Seconds   int64  `json:"seconds"`
}

// HoldRequest is the body of POST /admin/v1/holds.
type HoldRequest struct {
	UID    string `json:"uid,omitempty"`
	CV     string `json:"cv,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (h *Handler) complianceRoutes() {
	h.handle("GET /admin/v1/retention/{cv}", h.getRetention)
	h.handle("PUT /admin/v1/retention/{cv}", h.setRetention)
	h.handle("GET /admin/v1/holds", h.listHolds)
	h.handle("POST /admin/v1/holds", h.addHold)
	h.handle("DELETE /admin/v1/holds/{id}", h.removeHold)
	h.handle("GET /admin/v1/export", h.export)
	h.handle("GET /admin/v1/export/files", h.exportFiles)
}

func (h *Handler) compliance(w http.ResponseWriter) bool {
	if h.Compliance == nil {
		writeErr(w, http.StatusNotFound, "compliance is not available in this process")
		return false
	}
	return true
}

func actor(r *http.Request) compliance.Actor {
	a := compliance.Actor{By: "admin-api"}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		a.IP = host
	}
	return a
}

// complianceFail answers a compliance error: bad arguments are 400, an
// unknown hold 404.
func (h *Handler) complianceFail(w http.ResponseWriter, err error) {
	for _, bad := range []error{compliance.ErrBadConv, compliance.ErrBadRetention, compliance.ErrHoldTarget,
		compliance.ErrBadUID, compliance.ErrReason, compliance.ErrBadHoldID, compliance.ErrBadTime, compliance.ErrTimeRange} {
		if errors.Is(err, bad) {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if errors.Is(err, compliance.ErrUnknownHold) || errors.Is(err, compliance.ErrNoFiles) {
		writeErr(w, http.StatusNotFound, err.Error())
		return
	}
	if errors.Is(err, im.ErrTooBig) { // a store's capacity (the cluster's hold list)
		writeErr(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	h.fail(w, err)
}

func retentionBody(cv string, d time.Duration) RetentionBody {
	return RetentionBody{CV: cv, Retention: d.String(), Seconds: int64(d / time.Second)}
}

func (h *Handler) getRetention(w http.ResponseWriter, r *http.Request) {
	if !h.compliance(w) {
		return
	}
	cv := r.PathValue("cv")
	d, err := h.Compliance.Retention(cv)
	if err != nil {
		h.complianceFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, retentionBody(cv, d))
}

func (h *Handler) setRetention(w http.ResponseWriter, r *http.Request) {
	var req RetentionBody
	if !decode(w, r, &req) || !h.compliance(w) {
		return
	}
	cv := r.PathValue("cv")
	d, err := compliance.ParseRetention(req.Retention)
	if err == nil {
		err = h.Compliance.SetRetention(actor(r), cv, d)
	}
	if err != nil {
		h.complianceFail(w, err)
		return
	}
	h.Log.Info("retention set", "cv", cv, "retention", d)
	writeJSON(w, http.StatusOK, retentionBody(cv, d))
}

func (h *Handler) listHolds(w http.ResponseWriter, _ *http.Request) {
	if !h.compliance(w) {
		return
	}
	hs, err := h.Compliance.Holds()
	if err != nil {
		h.complianceFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, hs)
}

func (h *Handler) addHold(w http.ResponseWriter, r *http.Request) {
	var req HoldRequest
	if !decode(w, r, &req) || !h.compliance(w) {
		return
	}
	hold, err := h.Compliance.AddHold(actor(r), im.Hold{UID: req.UID, CV: req.CV, Reason: req.Reason})
	if err != nil {
		h.complianceFail(w, err)
		return
	}
	h.Log.Info("legal hold added", "hold", hold.ID, "user", hold.UID, "cv", hold.CV)
	writeJSON(w, http.StatusCreated, hold)
}

func (h *Handler) removeHold(w http.ResponseWriter, r *http.Request) {
	if !h.compliance(w) {
		return
	}
	hold, err := h.Compliance.RemoveHold(actor(r), r.PathValue("id"))
	if err != nil {
		h.complianceFail(w, err)
		return
	}
	h.Log.Info("legal hold removed", "hold", hold.ID)
	writeJSON(w, http.StatusOK, hold)
}

// export streams the export (application/jsonl). Arguments are checked
// before the first byte; a failure midway ends the stream without a
// manifest line.
func (h *Handler) export(w http.ResponseWriter, r *http.Request) {
	if !h.compliance(w) {
		return
	}
	q, err := exportQuery(r)
	if err == nil {
		err = compliance.CheckQuery(q)
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error()) // every error here is a bad argument
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	m, err := h.Compliance.Export(actor(r), w, q)
	if err != nil {
		h.Log.Error("export failed midway", "error", err)
		return
	}
	h.Log.Info("export", "count", m.Count, "user", q.UID, "cv", q.CV)
}

// exportFiles streams a tar of the files the selected events attach
// (application/x-tar): files/{fid} each, then files.jsonl.
func (h *Handler) exportFiles(w http.ResponseWriter, r *http.Request) {
	if !h.compliance(w) {
		return
	}
	q, err := exportQuery(r)
	if err == nil {
		err = compliance.CheckQuery(q)
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	n, err := h.Compliance.ExportFiles(actor(r), w, q)
	if errors.Is(err, compliance.ErrNoFiles) {
		h.complianceFail(w, err)
		return
	}
	if err != nil {
		h.Log.Error("file export failed midway", "error", err)
		return
	}
	h.Log.Info("file export", "files", n, "user", q.UID, "cv", q.CV)
}

func exportQuery(r *http.Request) (im.ExportQuery, error) {
	v := r.URL.Query()
	for k := range v {
		switch k {
		case "user", "cv", "since", "until":
		default:
			return im.ExportQuery{}, errors.New("adminapi: unknown export parameter " + k + " (user, cv, since, until)")
		}
	}
	q := im.ExportQuery{UID: v.Get("user"), CV: v.Get("cv")}
	var err error
	if q.Since, err = compliance.ParseTime(v.Get("since")); err != nil {
		return q, err
	}
	q.Until, err = compliance.ParseTime(v.Get("until"))
	return q, err
}

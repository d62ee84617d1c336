// Package adminapi is Tern's HTTP admin API and its client. The API
// manages accounts and device tokens of a running broker; `tern user` and
// `tern token` use the client when given --server. Every request carries
// "Authorization: Bearer {admin token}".
package adminapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/disk"
	"github.com/tern-im/tern/topics"
)

// User is the API view of an account.
type User struct {
	UID      string    `json:"uid"`
	Admin    bool      `json:"admin,omitempty"`
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created"`
}

// Token is the API view of a device token. Secret is set only in the reply
// to a create.
type Token struct {
	ID      string    `json:"id"`
	UID     string    `json:"uid"`
	DID     string    `json:"did"`
	Created time.Time `json:"created"`
	Secret  string    `json:"token,omitempty"`
}

// Kicker disconnects live sessions of a user (all devices if did is "").
type Kicker interface {
	Kick(uid, did string) int
}

// Handler serves the API under /admin/v1/.
type Handler struct {
	Accounts *accounts.Service
	Kicker   Kicker
	Token    string
	Log      *slog.Logger
	// Level, when set, is the root logger's level, changeable through
	// PUT /admin/v1/loglevel.
	Level *slog.LevelVar
	// Ops, when set, serves the operations routes (clients, stats,
	// notice); without it they answer 404.
	Ops Operator
	// Audit records every change made through the API (by "admin-api",
	// with the caller's address); NewHandler sets audit.Discard.
	Audit audit.Logger
	// Compliance, when set, serves retention, holds and export; without
	// it they answer 404.
	Compliance Compliance
	mux        *http.ServeMux
	// patterns are the registered routes, for the OpenAPI check.
	patterns []string
}

// NewHandler builds the handler.
func NewHandler(acc *accounts.Service, k Kicker, token string, log *slog.Logger) *Handler {
	h := &Handler{Accounts: acc, Kicker: k, Token: token, Log: log, Audit: audit.Discard, mux: http.NewServeMux()}
	h.handle("GET /admin/v1/users", h.listUsers)
	h.handle("POST /admin/v1/users", h.addUser)
	h.handle("GET /admin/v1/users/{uid}", h.getUser)
	h.handle("DELETE /admin/v1/users/{uid}", h.delUser)
	h.handle("PUT /admin/v1/users/{uid}/password", h.passwd)
	h.handle("POST /admin/v1/users/{uid}/disable", h.setDisabled(true))
	h.handle("POST /admin/v1/users/{uid}/enable", h.setDisabled(false))
	h.handle("GET /admin/v1/users/{uid}/tokens", h.listTokens)
	h.handle("POST /admin/v1/users/{uid}/tokens", h.createToken)
	h.handle("DELETE /admin/v1/users/{uid}/tokens", h.revokeTokens)
	h.handle("POST /admin/v1/users/{uid}/totp", h.enableTOTP)
	h.handle("DELETE /admin/v1/users/{uid}/totp", h.disableTOTP)
	h.handle("GET /admin/v1/loglevel", h.getLevel)
	h.handle("PUT /admin/v1/loglevel", h.setLevel)
	h.handle("GET /admin/v1/clients", h.listClients)
	h.handle("DELETE /admin/v1/clients/{id}", h.kickClient)
	h.handle("GET /admin/v1/stats", h.stats)
	h.handle("POST /admin/v1/notice", h.notice)
	h.handle("GET /admin/v1/cluster", h.cluster)
	h.handle("GET /admin/v1/cluster/clients", h.clusterClients)
	h.handle("GET /admin/v1/cluster/stats", h.clusterStats)
	h.complianceRoutes()
	return h
}

// handle registers one route; docs/admin-openapi.yaml documents each.
func (h *Handler) handle(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc(pattern, fn)
	h.patterns = append(h.patterns, pattern)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !authorized(r, h.Token) {
		writeErr(w, http.StatusUnauthorized, "missing or wrong admin token")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	h.mux.ServeHTTP(w, r)
}

// RequireToken serves next only to requests bearing the admin token.
func RequireToken(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r, token) {
			writeErr(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func authorized(r *http.Request, token string) bool {
	got, ok := bearer(r)
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func bearer(r *http.Request) (string, bool) {
	const p = "Bearer "
	a := r.Header.Get("Authorization")
	if len(a) <= len(p) || a[:len(p)] != p {
		return "", false
	}
	return a[len(p):], true
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// audit records a change made through the API.
func (h *Handler) audit(r *http.Request, typ, uid, target string, err error) {
	h.auditAs(r, audit.Entry{Type: typ, UID: uid, Target: target}, err)
}

func (h *Handler) auditAs(r *http.Request, e audit.Entry, err error) {
	e.By, e.OK = "admin-api", err == nil
	if err != nil {
		e.Reason = err.Error()
	}
	if host, _, e2 := net.SplitHostPort(r.RemoteAddr); e2 == nil {
		e.IP = host
	}
	h.Audit.Log(e)
}

// fail maps service errors to statuses.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, accounts.ErrUnknownUser):
		writeErr(w, http.StatusNotFound, err.Error())
	case errors.Is(err, accounts.ErrUserExists), errors.Is(err, accounts.ErrTOTPOn), errors.Is(err, accounts.ErrTOTPOff):
		writeErr(w, http.StatusConflict, err.Error())
	case errors.Is(err, accounts.ErrWeakPassword),
		errors.Is(err, topics.ErrEmptyID), errors.Is(err, topics.ErrIDChars),
		errors.Is(err, topics.ErrIDTooLong), errors.Is(err, topics.ErrReservedID):
		writeErr(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, disk.ErrLow):
		writeErr(w, http.StatusInsufficientStorage, err.Error())
	default:
		h.Log.Error("admin api", "error", err)
		writeErr(w, http.StatusInternalServerError, "internal error")
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

func (h *Handler) listUsers(w http.ResponseWriter, _ *http.Request) {
	us, err := h.Accounts.Users()
	if err != nil {
		h.fail(w, err)
		return
	}
	out := make([]User, 0, len(us))
	for _, u := range us {
		out = append(out, User{UID: u.UID, Admin: u.Admin, Disabled: u.Disabled, Created: u.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

// AddUserRequest is the body of POST /admin/v1/users.
type AddUserRequest struct {
	UID      string `json:"uid"`
	Password string `json:"password"`
	Admin    bool   `json:"admin,omitempty"`
}

func (h *Handler) addUser(w http.ResponseWriter, r *http.Request) {
	var req AddUserRequest
	if !decode(w, r, &req) {
		return
	}
	if err := h.Accounts.AddUser(req.UID, req.Password, req.Admin); err != nil {
		h.audit(r, audit.UserCreate, req.UID, "", err)
		h.fail(w, err)
		return
	}
	h.audit(r, audit.UserCreate, req.UID, "", nil)
	h.Log.Info("user added", "user", req.UID, "admin", req.Admin)
	u, err := h.Accounts.User(req.UID)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, User{UID: u.UID, Admin: u.Admin, Disabled: u.Disabled, Created: u.Created})
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := h.Accounts.User(r.PathValue("uid"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, User{UID: u.UID, Admin: u.Admin, Disabled: u.Disabled, Created: u.Created})
}

func (h *Handler) delUser(w http.ResponseWriter, r *http.Request) {
	uid := r.PathValue("uid")
	if err := h.Accounts.DeleteUser(uid); err != nil {
		h.audit(r, audit.UserDelete, uid, "", err)
		h.fail(w, err)
		return
	}
	h.audit(r, audit.UserDelete, uid, "", nil)
	h.Kicker.Kick(uid, "")
	h.Log.Info("user deleted", "user", uid)
	w.WriteHeader(http.StatusNoContent)
}

// PasswordRequest is the body of PUT /admin/v1/users/{uid}/password.
type PasswordRequest struct {
	Password string `json:"password"`
}

func (h *Handler) passwd(w http.ResponseWriter, r *http.Request) {
	var req PasswordRequest
	if !decode(w, r, &req) {
		return
	}
	err := h.Accounts.SetPassword(r.PathValue("uid"), req.Password)
	h.audit(r, audit.UserPasswd, r.PathValue("uid"), "", err)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) setDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("uid")
		typ := audit.UserEnable
		if disabled {
			typ = audit.UserDisable
		}
		err := h.Accounts.SetDisabled(uid, disabled)
		h.audit(r, typ, uid, "", err)
		if err != nil {
			h.fail(w, err)
			return
		}
		if disabled {
			h.Kicker.Kick(uid, "")
		}
		h.Log.Info("user updated", "user", uid, "disabled", disabled)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := h.Accounts.Tokens(r.PathValue("uid"))
	if err != nil {
		h.fail(w, err)
		return
	}
	out := make([]Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, Token{ID: t.ID, UID: t.UID, DID: t.DID, Created: t.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

// TokenRequest is the body of POST /admin/v1/users/{uid}/tokens.
type TokenRequest struct {
	DID string `json:"did"`
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if !decode(w, r, &req) {
		return
	}
	secret, t, err := h.Accounts.CreateToken(r.PathValue("uid"), req.DID)
	h.audit(r, audit.TokenCreate, r.PathValue("uid"), t.ID, err)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.Log.Info("token created", "user", t.UID, "device", t.DID, "token_id", t.ID)
	writeJSON(w, http.StatusCreated, Token{ID: t.ID, UID: t.UID, DID: t.DID, Created: t.Created, Secret: secret})
}

// RevokeResult is the reply to DELETE /admin/v1/users/{uid}/tokens.
type RevokeResult struct {
	Revoked int `json:"revoked"`
}

func (h *Handler) revokeTokens(w http.ResponseWriter, r *http.Request) {
	uid, did, id := r.PathValue("uid"), r.URL.Query().Get("did"), r.URL.Query().Get("id")
	n, err := h.Accounts.RevokeTokens(uid, did, id)
	h.auditAs(r, audit.Entry{Type: audit.TokenRevoke, UID: uid, DID: did, Target: id}, err)
	if err != nil {
		h.fail(w, err)
		return
	}
	if n > 0 {
		h.Kicker.Kick(uid, did)
	}
	h.Log.Info("tokens revoked", "user", uid, "device", did, "count", n)
	writeJSON(w, http.StatusOK, RevokeResult{Revoked: n})
}

func (h *Handler) enableTOTP(w http.ResponseWriter, r *http.Request) {
	uid := r.PathValue("uid")
	setup, err := h.Accounts.EnableTOTP(uid)
	h.auditAs(r, audit.Entry{Type: audit.UserTOTP, UID: uid, Target: "enable"}, err)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.Log.Info("two-factor login enabled", "user", uid)
	writeJSON(w, http.StatusCreated, setup)
}

func (h *Handler) disableTOTP(w http.ResponseWriter, r *http.Request) {
	uid := r.PathValue("uid")
	err := h.Accounts.DisableTOTP(uid)
	h.auditAs(r, audit.Entry{Type: audit.UserTOTP, UID: uid, Target: "disable"}, err)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.Log.Info("two-factor login disabled", "user", uid)
	w.WriteHeader(http.StatusNoContent)
}

// LogLevel is the body and reply of /admin/v1/loglevel.
type LogLevel struct {
	Level string `json:"level"` // debug, info, warn or error
}

func (h *Handler) getLevel(w http.ResponseWriter, _ *http.Request) {
	if h.Level == nil {
		writeErr(w, http.StatusNotFound, "log level is not adjustable in this process")
		return
	}
	writeJSON(w, http.StatusOK, LogLevel{Level: strings.ToLower(h.Level.Level().String())})
}

func (h *Handler) setLevel(w http.ResponseWriter, r *http.Request) {
	var req LogLevel
	if !decode(w, r, &req) {
		return
	}
	if h.Level == nil {
		writeErr(w, http.StatusNotFound, "log level is not adjustable in this process")
		return
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(req.Level)); err != nil {
		writeErr(w, http.StatusBadRequest, "level must be debug, info, warn or error")
		return
	}
	h.Level.Set(l)
	h.Log.Info("log level changed", "level", l.String())
	writeJSON(w, http.StatusOK, LogLevel{Level: strings.ToLower(l.String())})
}

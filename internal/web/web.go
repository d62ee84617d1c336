// Package web is Tern's HTTP API for people, browsers and phones
// (PROTOCOL §15): POST /v1/login issues device tokens, /v1/files/ takes
// resumable uploads with the tus 1.0 protocol (tusd's handler over a data
// store that writes into internal/files), and GET /v1/files/{fid}
// downloads with Range and ETag. Every request but login and CORS
// preflights carries "Authorization: Bearer {device token}".
package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	xslog "golang.org/x/exp/slog"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/topics"
)

// FilesPath is where tus uploads and downloads live.
const FilesPath = "/v1/files/"

// Options configures the handler. Accounts and Files are required.
type Options struct {
	Accounts *accounts.Service
	Files    *files.Service
	Log      *slog.Logger
	// MaxFailures failed logins per user or remote address start
	// lockouts of Lockout, doubling per failure up to MaxLockout (the MQTT
	// auth settings). MaxFailures 0 means no lockout.
	MaxFailures         int
	Lockout, MaxLockout time.Duration
	// Search answers GET /v1/search with the search RPC's rules (§15);
	// nil answers it 501.
	Search Searcher
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Audit records every login outcome (auth.login); nil means
	// audit.Discard.
	Audit audit.Logger
}

// Searcher runs a search for a user: the IM service.
type Searcher interface {
	Search(uid string, a codec.SearchArgs) (any, error)
}

// Handler serves /v1/.
type Handler struct {
	o   Options
	mux *http.ServeMux
	tus *tusd.UnroutedHandler
	// users and addrs throttle failed logins per user and per remote
	// address (4 × MaxFailures: many devices may share a NAT).
	users, addrs *throttle
}

// New builds the handler.
func New(o Options) (*Handler, error) {
	if o.Accounts == nil || o.Files == nil {
		return nil, errors.New("web: Accounts and Files are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	h := &Handler{o: o, mux: http.NewServeMux(),
		users: newThrottle(o.MaxFailures, o.Lockout, o.MaxLockout, o.Now),
		addrs: newThrottle(4*o.MaxFailures, o.Lockout, o.MaxLockout, o.Now)}
	st := &tusStore{files: o.Files, log: o.Log}
	composer := tusd.NewStoreComposer()
	composer.UseCore(st)
	composer.UseTerminater(st)
	memorylocker.New().UseIn(composer)
	var err error
	h.tus, err = tusd.NewUnroutedHandler(tusd.Config{
		StoreComposer: composer,
		BasePath:      FilesPath,
		MaxSize:       o.Files.MaxSize(),
		// Downloads are ours (GET /v1/files/{fid}: committed files, the
		// read rule of §11); concatenation is not offered.
		DisableDownload:      true,
		DisableConcatenation: true,
		// tusd logs every request at info; our own errors are logged by
		// the store below.
		Logger: xslog.New(xslog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	// tusd's unrouted handler takes the upload id from the path left after
	// the base path.
	tus := func(fn http.HandlerFunc) http.Handler {
		return h.auth(http.StripPrefix(FilesPath, h.tus.Middleware(fn)))
	}
	h.mux.HandleFunc("POST /v1/login", h.login)
	h.mux.Handle("POST "+FilesPath, tus(h.tus.PostFile))
	h.mux.Handle("HEAD "+FilesPath+"{fid}", tus(h.tus.HeadFile))
	h.mux.Handle("PATCH "+FilesPath+"{fid}", tus(h.tus.PatchFile))
	h.mux.Handle("DELETE "+FilesPath+"{fid}", tus(h.tus.DelFile))
	// CORS preflights and protocol discovery carry no credentials.
	h.mux.Handle("OPTIONS "+FilesPath, h.tus.Middleware(http.NotFoundHandler()))
	h.mux.Handle("OPTIONS "+FilesPath+"{fid}", h.tus.Middleware(http.NotFoundHandler()))
	h.mux.Handle("GET "+FilesPath+"{fid}", h.auth(http.HandlerFunc(h.download)))
	h.mux.Handle("GET /v1/search", h.auth(http.HandlerFunc(h.search)))
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type ctxKey struct{}

// identity returns the caller authenticated by auth.
func identity(ctx context.Context) (topics.Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(topics.Identity)
	return id, ok
}

// auth admits requests with a valid device token.
func (h *Handler) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeErr(w, http.StatusUnauthorized, "missing bearer token")
			return
		}
		id, err := h.o.Accounts.Bearer(secret)
		if err != nil {
			if !errors.Is(err, accounts.ErrBadCredentials) && !errors.Is(err, accounts.ErrDisabled) {
				h.o.Log.Error("web: bearer", "error", err)
				writeErr(w, http.StatusInternalServerError, "server fault")
				return
			}
			writeErr(w, http.StatusUnauthorized, "bad token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// apiError is the JSON error body of §15.
type apiError struct {
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Code: code, Msg: msg})
}

// fileErr answers a refusal of the file service.
func (h *Handler) fileErr(w http.ResponseWriter, err error) {
	var fe *files.Error
	if errors.As(err, &fe) {
		writeErr(w, fe.Code, fe.Msg)
		return
	}
	h.o.Log.Error("web: files", "error", err)
	writeErr(w, http.StatusInternalServerError, "server fault")
}

// loginReq is the body of POST /v1/login.
type loginReq struct {
	UID      string `json:"uid"`
	Password string `json:"password"`
	OTP      string `json:"otp,omitempty"`
	DID      string `json:"did,omitempty"`
}

type loginResp struct {
	UID   string `json:"uid"`
	DID   string `json:"did"`
	Token string `json:"token"`
}

// login checks uid and password and issues a device token for did (a new
// web-… did when none is given).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req loginReq
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed body")
		return
	}
	if req.DID == "" {
		req.DID = newWebDID()
	}
	if topics.CheckUID(req.UID) != nil || topics.CheckDID(req.DID) != nil {
		writeErr(w, http.StatusBadRequest, "bad uid or did")
		return
	}
	// The password only: a token does not buy another token here.
	if strings.HasPrefix(req.Password, accounts.TokenPrefix) {
		writeErr(w, http.StatusUnauthorized, "bad credentials")
		return
	}
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	if h.users.locked(req.UID) || h.addrs.locked(addr) {
		h.o.Log.Info("web: login throttled", "user", req.UID, "remote", addr)
		writeErr(w, http.StatusTooManyRequests, "too many failed logins: try again later")
		return
	}
	// The password, then for a user with two-factor login the code (or a
	// recovery code), then a device token (PROTOCOL §15, §16).
	secret, _, err := h.o.Accounts.LoginWithOTP(req.UID, req.Password, req.OTP, req.DID, h.o.Now())
	h.audit(req, addr, err)
	switch {
	case errors.Is(err, accounts.ErrOTPRequired):
		// The right password without a code: the client asks for one.
		writeErr(w, http.StatusUnauthorized, "otp required")
		return
	case errors.Is(err, accounts.ErrOTPLocked):
		h.o.Log.Info("web: otp throttled", "user", req.UID, "remote", addr)
		writeErr(w, http.StatusTooManyRequests, "too many wrong codes: try again later")
		return
	case errors.Is(err, accounts.ErrBadOTP):
		h.addrs.failure(addr)
		h.o.Log.Info("web: wrong otp", "user", req.UID, "remote", addr)
		writeErr(w, http.StatusUnauthorized, "wrong or used otp")
		return
	case errors.Is(err, accounts.ErrBadCredentials), errors.Is(err, accounts.ErrDisabled):
		h.users.failure(req.UID)
		h.addrs.failure(addr)
		h.o.Log.Info("web: login refused", "user", req.UID, "remote", addr)
		writeErr(w, http.StatusUnauthorized, "bad credentials")
		return
	case err != nil:
		h.o.Log.Error("web: login", "error", err)
		writeErr(w, http.StatusInternalServerError, "server fault")
		return
	}
	h.users.success(req.UID)
	writeJSON(w, http.StatusOK, loginResp{UID: req.UID, DID: req.DID, Token: secret})
}

// audit records a /v1/login outcome (auth.login, reason "web" or why it
// was refused).
func (h *Handler) audit(req loginReq, addr string, err error) {
	e := audit.Entry{Type: audit.AuthLogin, UID: req.UID, DID: req.DID, IP: addr, OK: err == nil, Reason: "web"}
	switch {
	case err == nil:
	case errors.Is(err, accounts.ErrOTPRequired):
		e.Reason = "otp_required"
	case errors.Is(err, accounts.ErrBadOTP):
		e.Reason = "bad_otp"
	case errors.Is(err, accounts.ErrOTPLocked):
		e.Reason = "otp_throttled"
	case errors.Is(err, accounts.ErrDisabled):
		e.Reason = "disabled"
	case errors.Is(err, accounts.ErrBadCredentials):
		e.Reason = "bad_credentials"
	default:
		e.Reason = "internal"
	}
	h.o.Audit.Log(e)
}

// newWebDID returns "web-" and 11 random base32 characters.
func newWebDID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [11]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return "web-" + string(b[:])
}

// download serves a committed file, or with ?thumb=1 its JPEG thumbnail,
// with Range, ETag (the content hash) and the sniffed Content-Type.
func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	id, _ := identity(r.Context())
	fid := r.PathValue("fid")
	thumb := r.URL.Query().Get("thumb") == "1"
	var (
		rd interface {
			io.ReadSeeker
			Close() error
		}
		f   files.File
		err error
	)
	if thumb {
		rd, f, err = h.o.Files.Thumb(id.UID, fid)
	} else {
		rd, f, err = h.o.Files.Open(id.UID, fid)
	}
	if err != nil {
		h.fileErr(w, err)
		return
	}
	defer rd.Close()
	hd := w.Header()
	ct, etag := f.CT, `"`+f.Hash+`"`
	if thumb {
		ct, etag = "image/jpeg", `"`+f.Hash+`-t"`
	}
	hd.Set("Content-Type", ct)
	hd.Set("ETag", etag)
	// Content is immutable, but only for those who may read it.
	hd.Set("Cache-Control", "private, max-age=31536000, immutable")
	hd.Set("X-Content-Type-Options", "nosniff")
	// An uploaded HTML page must not run as this origin.
	hd.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	disp := "attachment"
	if strings.HasPrefix(ct, "image/") {
		disp = "inline"
	}
	if f.Name != "" {
		if v := mime.FormatMediaType(disp, map[string]string{"filename": f.Name}); v != "" {
			disp = v
		}
	}
	hd.Set("Content-Disposition", disp)
	http.ServeContent(w, r, "", f.Committed, rd)
}

// search answers GET /v1/search?q=…&cv=…&before=…&max=… as the search RPC
// answers the same arguments (PROTOCOL §15).
func (h *Handler) search(w http.ResponseWriter, r *http.Request) {
	if h.o.Search == nil {
		writeErr(w, http.StatusNotImplemented, "not implemented")
		return
	}
	id, _ := identity(r.Context())
	q := r.URL.Query()
	a := codec.SearchArgs{Q: q.Get("q"), CV: q.Get("cv"), Before: q.Get("before")}
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "max: not a number")
			return
		}
		a.Max = n
	}
	res, err := h.o.Search.Search(id.UID, a)
	if err != nil {
		e := im.Fault(err)
		if e.Code == http.StatusInternalServerError {
			h.o.Log.Error("web: search", "user", id.UID, "error", err)
		}
		writeErr(w, e.Code, e.Msg)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

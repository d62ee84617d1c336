package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/compliance"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/store"
)

// backend is where user and token commands act: a stopped broker's data
// dir, or a running broker's admin API.
type backend interface {
	AddUser(ctx context.Context, uid, password string, admin bool) error
	SetPassword(ctx context.Context, uid, password string) error
	SetDisabled(ctx context.Context, uid string, disabled bool) error
	DeleteUser(ctx context.Context, uid string) error
	Users(ctx context.Context) ([]adminapi.User, error)
	CreateToken(ctx context.Context, uid, did string) (adminapi.Token, error)
	Tokens(ctx context.Context, uid string) ([]adminapi.Token, error)
	RevokeTokens(ctx context.Context, uid, did, id string) (int, error)
	EnableTOTP(ctx context.Context, uid string) (accounts.TOTPSetup, error)
	DisableTOTP(ctx context.Context, uid string) error

	// Compliance (PROTOCOL §16).
	SetRetention(ctx context.Context, cv, retention string) (adminapi.RetentionBody, error)
	Retention(ctx context.Context, cv string) (adminapi.RetentionBody, error)
	AddHold(ctx context.Context, req adminapi.HoldRequest) (im.Hold, error)
	Holds(ctx context.Context) ([]im.Hold, error)
	RemoveHold(ctx context.Context, id string) (im.Hold, error)
	// Export streams an export (query keys user, cv, since, until) to w;
	// ExportFiles the tar of the files its events attach.
	Export(ctx context.Context, q url.Values, w io.Writer) error
	ExportFiles(ctx context.Context, q url.Values, w io.Writer) error

	Close() error
}

// openBackend opens the data dir, or the admin API when server is set.
// create makes a missing data dir (for the first `user add`).
func openBackend(common *commonFlags, server string, create bool) (backend, error) {
	cfg, err := common.load()
	if err != nil {
		return nil, err
	}
	if server != "" {
		c, err := adminClient(cfg, server)
		if err != nil {
			return nil, err
		}
		return remote{c}, nil
	}
	// A cluster node's state is in JetStream, not in its data dir.
	if _, err := os.Stat(filepath.Join(cfg.Data, "nats")); err == nil || cfg.Cluster.Enabled() {
		return nil, fmt.Errorf("%s belongs to a cluster node: use --server URL (the admin API of any running node)", cfg.Data)
	}
	if create {
		if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	st, err := openStore(cfg, os.Stderr)
	if err != nil {
		if inUse := (*store.InUseError)(nil); errors.As(err, &inUse) {
			return nil, fmt.Errorf("%w (is the broker running? then use --server URL)", err)
		}
		return nil, err
	}
	acc := accounts.New(st, accounts.Params{
		Time: cfg.Auth.Argon2Time, Memory: uint32(cfg.Auth.Argon2Memory >> 10), Threads: cfg.Auth.Argon2Threads,
	}, runtime.NumCPU())
	l := &local{st: st, acc: acc, aud: audit.Discard, by: cliActor()}
	if cfg.Audit.Enabled {
		// The store's directory lock keeps a running broker (the other
		// writer of the audit files) out while this one is open.
		al, err := audit.Open(broker.AuditOptions(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))))
		if err != nil {
			_ = st.Close() // the audit error is the one to report
			return nil, err
		}
		l.al, l.aud = al, al
	}
	l.comp = compliance.New(st, l.aud)
	fs, err := files.New(files.Options{Dir: filepath.Join(cfg.Data, "files"), Meta: st.FileMeta()})
	if err != nil {
		_ = l.Close() // the files error is the one to report
		return nil, err
	}
	l.comp.Files = &compliance.Files{Meta: fs.Meta(), Open: fs.OpenFile}
	return l, nil
}

// cliActor is the `by` of audit lines written by the CLI: "cli:" and the
// operating system user.
func cliActor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

// localAdmin is an admin API client for server, or, when server is empty,
// for the broker of this config on 127.0.0.1 (its http.addr's port); cmd
// names the command in the error when the config has no HTTP address.
func localAdmin(cfg *config.Config, server, cmd string) (*adminapi.Client, error) {
	if server == "" {
		_, port, err := net.SplitHostPort(cfg.HTTP.Addr)
		if err != nil {
			return nil, fmt.Errorf("%s: give --server URL (the config has no http.addr)", cmd)
		}
		server = "http://127.0.0.1:" + port
	}
	return adminClient(cfg, server)
}

// openStore opens the stopped broker's store in cfg.Data for an offline
// command, logging Badger's errors to w. A data dir held by a running
// broker is a *store.InUseError.
func openStore(cfg *config.Config, w io.Writer) (*store.Store, error) {
	if _, err := os.Stat(cfg.Data); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.Data, err)
	}
	return store.Open(cfg.Data, store.Options{
		MemTableSize: int64(cfg.Store.MemTableSize),
		Logger:       slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelError})),
	})
}

// adminClient is an admin API client for server with the admin token
// from the config (admin_token, TERN_ADMIN_TOKEN) or DATA/admin.token.
func adminClient(cfg *config.Config, server string) (*adminapi.Client, error) {
	tok := cfg.AdminToken
	if tok == "" {
		raw, err := os.ReadFile(broker.AdminTokenFile(cfg.Data))
		if err != nil {
			return nil, errors.New("no admin token: set TERN_ADMIN_TOKEN, admin_token in -c FILE, or --data DIR holding admin.token")
		}
		tok = strings.TrimSpace(string(raw))
	}
	return adminapi.NewClient(server, tok), nil
}

type remote struct{ *adminapi.Client }

func (remote) Close() error { return nil }

// local acts on an opened data dir.
type local struct {
	st  *store.Store
	acc *accounts.Service
	// al is the data dir's audit log (nil when audit is off); aud is
	// what the commands log to, as by.
	al   *audit.Log
	aud  audit.Logger
	by   string
	comp *compliance.Service
}

// audit records a change made by the CLI and returns err.
func (l *local) audit(e audit.Entry, err error) error {
	e.By, e.OK = l.by, err == nil
	if err != nil {
		e.Reason = err.Error()
	}
	l.aud.Log(e)
	return err
}

func (l *local) AddUser(_ context.Context, uid, pw string, admin bool) error {
	return l.audit(audit.Entry{Type: audit.UserCreate, UID: uid}, l.acc.AddUser(uid, pw, admin))
}
func (l *local) SetPassword(_ context.Context, uid, pw string) error {
	return l.audit(audit.Entry{Type: audit.UserPasswd, UID: uid}, l.acc.SetPassword(uid, pw))
}
func (l *local) SetDisabled(_ context.Context, uid string, d bool) error {
	typ := audit.UserEnable
	if d {
		typ = audit.UserDisable
	}
	return l.audit(audit.Entry{Type: typ, UID: uid}, l.acc.SetDisabled(uid, d))
}
func (l *local) DeleteUser(_ context.Context, uid string) error {
	return l.audit(audit.Entry{Type: audit.UserDelete, UID: uid}, l.acc.DeleteUser(uid))
}
func (l *local) Users(context.Context) ([]adminapi.User, error) {
	us, err := l.acc.Users()
	out := make([]adminapi.User, 0, len(us))
	for _, u := range us {
		out = append(out, adminapi.User{UID: u.UID, Admin: u.Admin, Disabled: u.Disabled, Created: u.Created})
	}
	return out, err
}
func (l *local) CreateToken(_ context.Context, uid, did string) (adminapi.Token, error) {
	secret, t, err := l.acc.CreateToken(uid, did)
	err = l.audit(audit.Entry{Type: audit.TokenCreate, UID: uid, DID: did, Target: t.ID}, err)
	return adminapi.Token{ID: t.ID, UID: t.UID, DID: t.DID, Created: t.Created, Secret: secret}, err
}
func (l *local) Tokens(_ context.Context, uid string) ([]adminapi.Token, error) {
	ts, err := l.acc.Tokens(uid)
	out := make([]adminapi.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, adminapi.Token{ID: t.ID, UID: t.UID, DID: t.DID, Created: t.Created})
	}
	return out, err
}
func (l *local) RevokeTokens(_ context.Context, uid, did, id string) (int, error) {
	n, err := l.acc.RevokeTokens(uid, did, id)
	return n, l.audit(audit.Entry{Type: audit.TokenRevoke, UID: uid, DID: did, Target: id}, err)
}
func (l *local) Close() error {
	err := l.st.Close()
	if l.al != nil {
		err = errors.Join(err, l.al.Close())
	}
	return err
}

func (l *local) EnableTOTP(_ context.Context, uid string) (accounts.TOTPSetup, error) {
	s, err := l.acc.EnableTOTP(uid)
	return s, l.audit(audit.Entry{Type: audit.UserTOTP, UID: uid, Target: "enable"}, err)
}
func (l *local) DisableTOTP(_ context.Context, uid string) error {
	return l.audit(audit.Entry{Type: audit.UserTOTP, UID: uid, Target: "disable"}, l.acc.DisableTOTP(uid))
}

func (l *local) actor() compliance.Actor { return compliance.Actor{By: l.by} }

func (l *local) SetRetention(_ context.Context, cv, retention string) (adminapi.RetentionBody, error) {
	d, err := compliance.ParseRetention(retention)
	if err == nil {
		err = l.comp.SetRetention(l.actor(), cv, d)
	}
	return adminapi.RetentionBody{CV: cv, Retention: d.String(), Seconds: int64(d.Seconds())}, err
}
func (l *local) Retention(_ context.Context, cv string) (adminapi.RetentionBody, error) {
	d, err := l.comp.Retention(cv)
	return adminapi.RetentionBody{CV: cv, Retention: d.String(), Seconds: int64(d.Seconds())}, err
}
func (l *local) AddHold(_ context.Context, req adminapi.HoldRequest) (im.Hold, error) {
	return l.comp.AddHold(l.actor(), im.Hold{UID: req.UID, CV: req.CV, Reason: req.Reason})
}
func (l *local) Holds(context.Context) ([]im.Hold, error) { return l.comp.Holds() }
func (l *local) RemoveHold(_ context.Context, id string) (im.Hold, error) {
	return l.comp.RemoveHold(l.actor(), id)
}
func (l *local) ExportFiles(_ context.Context, v url.Values, w io.Writer) error {
	q, err := exportQuery(v)
	if err != nil {
		return err
	}
	_, err = l.comp.ExportFiles(l.actor(), w, q)
	return err
}

func exportQuery(v url.Values) (im.ExportQuery, error) {
	q := im.ExportQuery{UID: v.Get("user"), CV: v.Get("cv")}
	var err error
	if q.Since, err = compliance.ParseTime(v.Get("since")); err != nil {
		return q, err
	}
	q.Until, err = compliance.ParseTime(v.Get("until"))
	return q, err
}

func (l *local) Export(_ context.Context, v url.Values, w io.Writer) error {
	q := im.ExportQuery{UID: v.Get("user"), CV: v.Get("cv")}
	var err error
	if q.Since, err = compliance.ParseTime(v.Get("since")); err != nil {
		return err
	}
	if q.Until, err = compliance.ParseTime(v.Get("until")); err != nil {
		return err
	}
	_, err = l.comp.Export(l.actor(), w, q)
	return err
}

// Package broker wires a Tern node together: config → store → accounts →
// mochi server with Tern's hooks (in one explicit order) → listeners and
// the HTTP endpoint. It holds no chat logic.
package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tern-im/tern/hooks/acl"
	"github.com/tern-im/tern/hooks/auth"
	filehook "github.com/tern-im/tern/hooks/files"
	"github.com/tern-im/tern/hooks/limits"
	"github.com/tern-im/tern/hooks/messaging"
	ternmetrics "github.com/tern-im/tern/hooks/metrics"
	"github.com/tern-im/tern/hooks/presence"
	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/internal/buildinfo"
	"github.com/tern-im/tern/internal/compliance"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/disk"
	"github.com/tern-im/tern/internal/dlp"
	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/service"
	"github.com/tern-im/tern/internal/listener"
	"github.com/tern-im/tern/internal/logging"
	"github.com/tern-im/tern/internal/metrics"
	"github.com/tern-im/tern/internal/relations"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/internal/searchproc"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/internal/store"
	"github.com/tern-im/tern/internal/web"
	"github.com/tern-im/tern/internal/webui"
	"github.com/tern-im/tern/topics"
)

// Version is the Tern version reported in im/sys/server.
const Version = buildinfo.Version

// Listener ids, for Addr.
const (
	ListenerMQTT = "mqtt"
	ListenerWS   = "ws"
	ListenerTLS  = "tls"
	ListenerWSS  = "wss"
	ListenerHTTP = "http"
	// ListenerHTTPWS is MQTT over WebSocket at /mqtt on the HTTP port
	// (the web client's origin); it has no address of its own.
	ListenerHTTPWS = "http-ws"
)

// Broker is one Tern node.
type Broker struct {
	// im is the IM service of the messaging hook (search over HTTP).
	im  *service.Service
	cfg *config.Config
	log *slog.Logger
	// st is the store of the IM core and the accounts: Badger (store,
	// single-node mode) or JetStream (cluster mode, with cl).
	st backend
	// store is Badger: every store of a single node; in cluster mode a
	// node-local one (files are on JetStream then).
	store *store.Store
	cl    clusterParts
	// search is the full-text index (nil when search.enabled is false).
	search SearchIndex
	// commits carries committed appends from the store to delivery.
	commits  *im.CommitStream
	accounts *accounts.Service
	sessions *session.Registry
	metrics  *metrics.Metrics
	mqtt     *mqtt.Server
	// audit is the audit log (nil when audit.enabled is false); auditor
	// is what the hooks and the admin API log to.
	audit   *audit.Log
	auditor audit.Logger
	// forget is told what retention removed and deletes purged; the
	// search index and file storage Add themselves to it.
	forget *im.Forgetters
	files  *files.Service
	epoch  uint64

	adminToken string
	level      *slog.LevelVar
	httpSrv    *http.Server
	httpLn     net.Listener
	httpWS     *listener.Handler
	ready      atomic.Bool
	started    time.Time // set in New, for stats
	// disk refuses writes below the free-space reserve; gate applies the
	// connection limits at accept.
	disk     *disk.Guard
	gate     *listener.Gate
	diskStop chan struct{}
	diskWG   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	watchID atomic.Int32
}

// New builds a broker from a validated config. Nothing listens until
// Start or Run.
func New(cfg *config.Config, log *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, log: log, started: time.Now(), diskStop: make(chan struct{}),
		commits: im.NewCommitStream(cfg.IM.CommitBacklog, messaging.DeliveryWorkers), forget: new(im.Forgetters)}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	b.disk = disk.New(disk.Options{
		Dir: cfg.Data, MinFree: uint64(cfg.Store.MinFree), MinFreePercent: cfg.Store.MinFreePercent,
		Log: log,
	})
	b.disk.Check() // before Badger writes anything
	b.auditor = audit.Discard
	if cfg.Audit.Enabled {
		al, err := audit.Open(AuditOptions(cfg, log))
		if err != nil {
			return nil, err
		}
		b.audit, b.auditor = al, al
	}
	if cfg.Cluster.Enabled() {
		if err := b.openCluster(); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(b.badgerDir(), store.Options{
		SyncWrites:     cfg.Store.SyncWrites,
		MemTableSize:   int64(cfg.Store.MemTableSize),
		BlockCacheSize: int64(cfg.Store.BlockCache),
		GCInterval:     cfg.Store.GCInterval,
		Retention:      cfg.IM.Retention,
		TrimEvery:      cfg.IM.TrimEvery,
		Logger:         log,
		Commits:        b.commits,
		OnCommit:       b.committed,
		Disk:           b.disk,
		Forget:         b.forget,
	})
	if err != nil {
		b.closeAudit()
		_ = b.closeCluster() // the store error is the one to report
		return nil, err
	}
	b.store = st
	if b.st == nil {
		b.st = st
	}
	if cfg.Search.Enabled {
		// The index follows the store by position on its own goroutine
		// (search.process: in a child process at a low CPU priority), off
		// the commit path; it catches up from its stored cursor. In
		// cluster mode each node keeps its own index of the shared
		// stream (a cache it can rebuild), woken by its own commits and
		// every search.poll for the other nodes'.
		var src search.Source = st
		if b.cl.js != nil {
			src = b.cl.js
		}
		if b.search, err = openSearch(cfg, src, log); err != nil {
			_ = st.Close() // the index error is the one to report
			b.closeAudit()
			return nil, err
		}
		// Messages a conversation's own retention trims leave the index.
		b.forget.Add(b.search)
	}
	if err := b.build(); err != nil {
		// The build error is the one to report.
		if b.search != nil {
			_ = b.search.Close()
		}
		_ = st.Close()
		b.closeAudit()
		_ = b.closeCluster()
		return nil, err
	}
	b.diskWG.Add(1)
	go func() {
		defer b.diskWG.Done()
		b.disk.Run(cfg.Store.DiskCheck, b.diskStop)
	}()
	return b, nil
}

func (b *Broker) build() error {
	cfg := b.cfg
	var err error
	if b.epoch, err = b.st.Incr("epoch"); err != nil {
		return fmt.Errorf("epoch: %w", err)
	}
	if b.adminToken, err = b.loadAdminToken(); err != nil {
		return err
	}
	b.accounts = accounts.New(b.st, accounts.Params{
		Time:    cfg.Auth.Argon2Time,
		Memory:  uint32(cfg.Auth.Argon2Memory >> 10),
		Threads: cfg.Auth.Argon2Threads,
	}, runtime.NumCPU())
	// Generations keep increasing across restarts: the epoch is the high part.
	b.sessions = session.NewRegistry(b.epoch << 40)

	b.mqtt = mqtt.New(&mqtt.Options{
		Capabilities:             capabilities(cfg),
		ClientNetReadBufferSize:  int(cfg.Limits.ReadBuffer),
		ClientNetWriteBufferSize: int(cfg.Limits.WriteBuffer),
		// $SYS is for admins; every 10 s is plenty and costs little.
		SysTopicResendInterval: 10,
		// The inline client is how the server publishes downstream.
		InlineClient: true,
		// mochi logs whole packets on errors: keep bodies out of the logs.
		Logger: slog.New(logging.Levels(logging.Redact(b.log.Handler()))),
	})
	b.metrics = metrics.New(b.mqtt.Info)
	b.metrics.StoreUnreadable(b.st.Unreadable)
	b.metrics.StoreSize(b.st.Size)
	b.metrics.AddDisk(b.disk.Low, b.disk.Free)
	var searcher im.Searcher
	if b.search != nil {
		b.metrics.AddSearch(b.search.Bytes, b.search.Lag)
		if w, ok := b.search.(*searchproc.Worker); ok {
			b.metrics.AddSearchWorker(w.Restarts)
		}
		searcher = b.search
	}

	fileOpts := files.Options{
		Dir: filepath.Join(cfg.Data, "files"), Meta: b.store.FileMeta(),
		MaxSize: int64(cfg.Files.MaxSize), Quota: int64(cfg.Files.Quota),
		Expiry: cfg.Files.UploadExpiry, SweepEvery: cfg.Files.Sweep, MaxPixels: cfg.Files.MaxPixels,
		DiskLow: b.disk.Low, Log: b.log,
	}
	if b.cl.js != nil {
		// Metadata, uploads and blobs shared by every node.
		if err := b.clusterFiles(&fileOpts); err != nil {
			return err
		}
	}
	if b.files, err = files.New(fileOpts); err != nil {
		return err
	}
	b.metrics.AddFiles(
		func() int64 { return b.files.Stats().Chunks }, func() int64 { return b.files.Stats().Commits },
		func() int64 { return b.files.Stats().ThumbsMade }, func() int64 { return b.files.Stats().Collected })
	// A message trimmed by age no longer keeps the files it attached.
	b.store.SetTrimmedAttachments(b.dropTrimmedRef)
	// The file.* RPC ops are the file hook's, registered in the IM
	// service's op table through the messaging hook.
	fileHook := new(filehook.Hook)
	msgHook := new(messaging.Hook)
	presHook := new(presence.Hook)
	var typing func(ev *im.Event, to []string)
	if cfg.Cluster.Enabled() {
		// The link starts below, before any client connects.
		typing = func(ev *im.Event, to []string) { b.cl.link.Typed(ev, to) }
	}

	relations := relations.New(b.st, b.log)
	// A deleted user's groups, contacts and blocks changed under the
	// messaging hook: drop what it cached about them, and the DM peer
	// answers that say the account exists.
	b.accounts.OnDelete = func(uid string, p accounts.Purged) {
		relations.Invalidate(append(p.Users, uid), p.Groups...)
		relations.UserDeleted(uid)
	}
	policy := &topics.Policy{Rules: cfg.Rules(), Relations: relations}
	var content im.ContentPolicy // nil: no content policy
	dlpPolicy, err := b.contentPolicy()
	if err != nil {
		return err
	}
	if dlpPolicy != nil {
		content = dlpPolicy
	}
	b.complianceMetrics(dlpPolicy)
	anon := map[string]bool{
		ListenerMQTT: cfg.MQTT.Anonymous, ListenerWS: cfg.WS.Anonymous,
		ListenerTLS: cfg.TLS.Anonymous, ListenerWSS: cfg.WSS.Anonymous,
		ListenerHTTPWS: cfg.WS.Anonymous, // the same MQTT over WebSocket, on the HTTP port
	}

	// Hook order matters where mochi stops at the first answer:
	//  0. metrics: counts what clients send (it answers nothing).
	//  1. limits: adjusts the CONNECT before anything else sees it, and
	//     marks the filters of a SUBSCRIBE beyond the cap first.
	//  2. feature hooks (messaging, presence, …) consume their upstream
	//     topics in OnPublish with CodeSuccessIgnore.
	//  3. acl: the only OnACLCheck; its OnPublish drops whatever im/
	//     publish the feature hooks left, so nothing is routed as-is.
	//  4. auth: the only OnConnectAuthenticate; last, so its OnDisconnect
	//     removes the session after every other hook has seen it.
	hooks := []struct {
		h    mqtt.Hook
		opts any
	}{
		{new(ternmetrics.Hook), &ternmetrics.Options{Metrics: b.metrics}},
		{new(limits.Hook), &limits.Options{
			MaxKeepalive:     uint16(cfg.Limits.MaxKeepalive / time.Second),
			MaxSubscriptions: cfg.Limits.MaxSubscriptions, MaxInflightBytes: int64(cfg.Limits.MaxInflightBytes),
			Metrics: b.metrics, Info: b.mqtt.Info, Server: b.mqtt,
		}},
		{msgHook, &messaging.Options{
			Server: b.mqtt, Store: b.st, Commits: b.commits, Sessions: b.sessions, Relations: relations,
			Metrics: b.metrics, Ops: fileHook.Ops(), Files: filehook.Attachments{Files: b.files}, Search: searcher,
			Content: content, Audit: b.auditor, Compliance: b.compliance(),
			Typing: typing,
			Policy: service.Policy{
				Epoch: b.epoch, EpochNow: b.clusterEpoch(), DMPolicy: cfg.IM.DMPolicy, MaxPacket: int(cfg.Limits.MaxPacketSize),
				MaxBody: int(cfg.IM.MaxBody), RateBurst: cfg.IM.RateBurst, RatePerSec: float64(cfg.IM.RatePerSec),
				MaxGroupMembers: cfg.IM.MaxGroupMembers,
				Limits: service.Limits{
					ReadBurst: cfg.IM.RPCReadBurst, ReadPerSec: float64(cfg.IM.RPCReadPerSec),
					WriteBurst: cfg.IM.RPCWriteBurst, WritePerMin: float64(cfg.IM.RPCWritePerMin),
					MaxGroupsOwned: cfg.IM.MaxGroupsOwned,
					AddsBurst:      cfg.IM.GroupAddsBurst, AddsPerHour: float64(cfg.IM.GroupAddsPerHour),
				},
			},
		}},
		{fileHook, &filehook.Options{
			Server: b.mqtt, Files: b.files, Sessions: b.sessions, MaxPacket: int(cfg.Limits.MaxPacketSize),
			UploadRate: int64(cfg.Files.UploadRate), UploadBurst: int64(cfg.Files.UploadBurst),
			// Half of what mochi holds in flight per client: a window of
			// download chunks is never cut by limits.max_inflight_bytes.
			GetBytes: int(cfg.Limits.MaxInflightBytes / 2),
		}},
		{presHook, b.presenceOptions(relations)},
		{new(acl.Hook), &acl.Options{Policy: policy, Sessions: b.sessions, Metrics: b.metrics, Audit: b.auditor}},
		{new(auth.Hook), &auth.Options{
			Server: b.mqtt, Accounts: b.accounts, Sessions: b.sessions, Metrics: b.metrics,
			Anonymous: anon, MaxFailures: cfg.Auth.MaxFailures,
			Lockout: cfg.Auth.Lockout, MaxLockout: cfg.Auth.MaxLockout, SweepEvery: cfg.Auth.SessionSweep,
			Audit: b.auditor,
		}},
	}
	for _, h := range hooks {
		if err := b.mqtt.AddHook(h.h, h.opts); err != nil {
			return fmt.Errorf("hook %s: %w", h.h.ID(), err)
		}
	}
	// Members of conversations holding a message that attaches a file may
	// read it: the IM service decides (PROTOCOL §11).
	b.files.SetAccess(msgHook.Service())
	b.im = msgHook.Service()
	if cfg.Cluster.Enabled() {
		if err := b.startLink(relations, msgHook, presHook); err != nil {
			return err
		}
		b.startTrimmer()
	}
	return b.addListeners()
}

// dropTrimmedRef drops the file reference of message id, which
// retention removed.
func (b *Broker) dropTrimmedRef(fid string, id ulid.ULID) {
	if err := b.files.RemoveRef(fid, service.MsgRef(id)); err != nil {
		b.log.Warn("files: drop the reference of a trimmed message", "fid", fid, "msg_id", id, "error", err)
	}
}

// compliance is the store of holds, retentions and exports: the
// cluster's in cluster mode, else Badger.
func (b *Broker) compliance() im.Compliance {
	if b.cl.js != nil {
		return b.cl.js
	}
	return b.store
}

// contentPolicy compiles the dlp section; nil when it has neither rules
// nor a webhook.
func (b *Broker) contentPolicy() (*dlp.Policy, error) {
	d := b.cfg.DLP
	rules := make([]dlp.Rule, 0, len(d.Rules))
	for _, r := range d.Rules {
		rules = append(rules, dlp.Rule{Name: r.Name, Match: r.Match, Action: r.Action})
	}
	var hook *dlp.Webhook
	if d.Webhook.URL != "" {
		hook = &dlp.Webhook{URL: d.Webhook.URL, Timeout: d.Webhook.Timeout, FailClosed: d.Webhook.Fail == "closed"}
	}
	p, err := dlp.New(rules, hook)
	if err != nil || p.Empty() {
		return nil, err
	}
	p.OnWebhookError = func(err error) { b.log.Warn("dlp webhook", "error", err, "fail", d.Webhook.Fail) }
	return p, nil
}

// complianceMetrics registers the audit log's and the content policy's
// counters (either may be off).
func (b *Broker) complianceMetrics(p *dlp.Policy) {
	reg := b.metrics.Registry
	if al := b.audit; al != nil {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tern_audit_lines_total",
				Help: "Lines written to the audit log."}, func() float64 { return float64(al.Lines()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tern_audit_write_failures_total",
				Help: "Audit lines that could not be written (see the error log)."}, func() float64 { return float64(al.Failures()) }),
		)
	}
	if p == nil {
		return
	}
	for i, action := range dlp.Actions {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tern_dlp_verdicts_total",
			Help: "Messages judged by the content policy, by action.", ConstLabels: prometheus.Labels{"action": action}},
			func() float64 { return float64(p.Verdicts()[i]) }))
	}
	if b.cfg.DLP.Webhook.URL != "" {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tern_dlp_webhook_failures_total",
			Help: "DLP webhook calls that failed or timed out (then dlp.webhook.fail applies)."},
			func() float64 { return float64(p.WebhookErrors()) }))
	}
}

// AuditOptions are the audit log's options for cfg: {data}/audit unless
// audit.dir is set.
func AuditOptions(cfg *config.Config, log *slog.Logger) audit.Options {
	o := audit.Options{Dir: cfg.Audit.Dir, MaxFileSize: int64(cfg.Audit.MaxFileSize), Log: log}
	if o.Dir == "" {
		o.Dir = filepath.Join(cfg.Data, "audit")
	}
	if cfg.Audit.Stdout {
		o.Stdout = os.Stdout
	}
	return o
}

func (b *Broker) closeAudit() {
	if b.audit != nil {
		if err := b.audit.Close(); err != nil {
			b.log.Error("audit: close", "error", err)
		}
	}
}

// capabilities sets mochi's limits on purpose; see configs/tern.yaml.
func capabilities(cfg *config.Config) *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	lim := cfg.Limits
	// 128 KiB by default: a file chunk or a long message, never a megabyte
	// of junk from a misbehaving device.
	c.MaximumPacketSize = uint32(lim.MaxPacketSize)
	// Disconnected sessions are kept at most this long; the durable user
	// stream, not the MQTT session, is what guarantees delivery.
	c.MaximumSessionExpiryInterval = uint32(lim.MaxSessionExpiry / time.Second)
	// 0: retained presence and keys never expire by themselves (mochi's
	// default of 24 h would silently drop them).
	c.MaximumMessageExpiryInterval = int64(lim.MaxMessageExpiry / time.Second)
	// mochi allocates the write queue channel up front: its 8192 slots
	// cost 64 KiB per client, resident once the allocation is recycled.
	// 256 slots (2 KiB) absorb bursts; beyond that a slow device's
	// deliveries are dropped, and the durable stream recovers them.
	c.MaximumClientWritesPending = int32(lim.WriteQueue)
	// Receive maximum bounds QoS 1 publishes in flight from one client.
	c.ReceiveMaximum = uint16(lim.ReceiveMaximum)
	// QoS 1 deliveries awaiting PUBACK per client before new ones are
	// dropped: memory is spent only on a real backlog, so this is generous
	// (plain-MQTT subscribers have no sync to recover from drops).
	c.MaximumInflight = uint16(lim.MaxInflight)
	// A handful of inbound aliases is enough for the few upstream topics.
	c.TopicAliasMaximum = uint16(lim.TopicAliasMaximum)
	// QoS 2 adds a round trip and state for nothing the stream needs;
	// it stays available for plain-MQTT clients.
	c.MaximumQos = 2
	if lim.MaxClients > 0 {
		c.MaximumClients = int64(lim.MaxClients)
	}
	c.Compatibilities.PassiveClientDisconnect = cfg.Compat.PassiveDisconnect
	c.Compatibilities.ObscureNotAuthorized = cfg.Compat.ObscureNotAuthorized
	// Properties of a PUBLISH are never echoed on its PUBACK.
	c.Compatibilities.NoInheritedPropertiesOnAck = true
	return c
}

// mqttListener is what Tern's listeners add to mochi's interface.
type mqttListener interface {
	listeners.Listener
	// Problem says why the listener is not accepting, or "".
	Problem() string
}

func (b *Broker) addListeners() error {
	cfg := b.cfg
	// One gate for every MQTT listener: the caps count connections over
	// all of them.
	b.gate = listener.NewGate(listener.Limits{
		MaxConns: cfg.Limits.MaxConnections, MaxPerIP: cfg.Limits.MaxConnectionsPerIP,
		RatePerIP: cfg.Limits.ConnectRatePerIP, BurstPerIP: cfg.Limits.ConnectBurstPerIP,
	})
	b.gate.Refused = func(reason string) { b.metrics.ConnRefused.WithLabelValues(reason).Inc() }
	tcp := func(id, addr string, tc *tls.Config) mqttListener {
		l := listener.NewTCP(id, addr, tc)
		l.ConnectTimeout = cfg.Limits.ConnectTimeout
		l.Gate = b.gate
		return l
	}
	ws := func(id, addr string, tc *tls.Config) mqttListener {
		l := listener.NewWS(id, addr, "/mqtt", tc)
		l.ConnectTimeout = cfg.Limits.ConnectTimeout
		l.Gate = b.gate
		return l
	}
	add := func(l mqttListener) error {
		if err := b.mqtt.AddListener(safeClose{l, b.closeClients}); err != nil {
			return fmt.Errorf("listener %s %s: %w", l.ID(), l.Address(), err)
		}
		b.metrics.AddListener(l.ID(), func() bool { return l.Problem() == "" })
		return nil
	}
	if cfg.MQTT.Addr != "" {
		if err := add(tcp(ListenerMQTT, cfg.MQTT.Addr, nil)); err != nil {
			return err
		}
	}
	if cfg.WS.Addr != "" {
		if err := add(ws(ListenerWS, cfg.WS.Addr, nil)); err != nil {
			return err
		}
	}
	if cfg.TLS.Addr != "" {
		tc, err := tlsConfig("tls", cfg.TLS)
		if err != nil {
			return err
		}
		if err := add(tcp(ListenerTLS, cfg.TLS.Addr, tc)); err != nil {
			return err
		}
	}
	if cfg.WSS.Addr != "" {
		tc, err := tlsConfig("wss", cfg.WSS)
		if err != nil {
			return err
		}
		if err := add(ws(ListenerWSS, cfg.WSS.Addr, tc)); err != nil {
			return err
		}
	}
	if cfg.HTTP.Addr != "" {
		ln, err := net.Listen("tcp", cfg.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("listener http %s: %w", cfg.HTTP.Addr, err)
		}
		b.httpLn = ln
		b.httpSrv = &http.Server{ReadHeaderTimeout: 10 * time.Second} // handler set in Start
		// MQTT over WebSocket at /mqtt on this port too, so the web client
		// reaches page and broker on one origin (PROTOCOL §15, §18).
		b.httpWS = listener.NewHandler(ListenerHTTPWS)
		b.httpWS.ConnectTimeout = cfg.Limits.ConnectTimeout
		b.httpWS.Gate = b.gate
		if err := add(b.httpWS); err != nil {
			return err
		}
	}
	return nil
}

func tlsConfig(name string, l config.Listener) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(l.Cert, l.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: cert/key: %w", name, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if l.ClientCA != "" {
		pem, err := os.ReadFile(l.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("%s: client_ca: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: client_ca %s: no PEM certificates", name, l.ClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if l.RequireClientCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

// loadAdminToken picks the admin token: config (or TERN_ADMIN_TOKEN, which
// the config loader applies), else {data}/admin.token, created 0600.
func (b *Broker) loadAdminToken() (string, error) {
	if b.cfg.AdminToken != "" {
		return b.cfg.AdminToken, nil
	}
	path := filepath.Join(b.cfg.Data, "admin.token")
	if raw, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(raw)); tok != "" {
			return tok, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	var buf [24]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(buf[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	b.log.Info("generated admin token", "path", path)
	return tok, nil
}

// AdminTokenFile returns where a generated admin token lives in dir.
func AdminTokenFile(dir string) string { return filepath.Join(dir, "admin.token") }

func (b *Broker) httpHandler() (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if p := b.Problems(); len(p) > 0 {
			http.Error(w, "not ready: "+strings.Join(p, "; "), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.metrics.Registry, promhttp.HandlerOpts{}))
	admin := adminapi.NewHandler(b.accounts, b, b.adminToken, b.log)
	admin.Level = b.level
	admin.Ops = b
	admin.Audit = b.auditor
	comp := compliance.New(b.compliance(), b.auditor)
	comp.Files = &compliance.Files{Meta: b.files.Meta(), Open: b.files.OpenFile}
	admin.Compliance = comp
	mux.Handle("/admin/", admin)
	// Login, tus uploads and downloads for people, browsers and phones (§15).
	v1, err := web.New(web.Options{
		Accounts: b.accounts, Files: b.files, Log: b.log, Search: b.im,
		MaxFailures: b.cfg.Auth.MaxFailures, Lockout: b.cfg.Auth.Lockout, MaxLockout: b.cfg.Auth.MaxLockout,
		Audit: b.auditor,
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("/v1/", v1)
	mux.Handle("/mqtt", b.httpWS)
	// The web client (§18): every path no route above claims.
	mux.Handle("/", webui.Handler())
	// Profiles for operators, behind the admin token like the admin API.
	prof := http.NewServeMux()
	prof.HandleFunc("/debug/pprof/", pprof.Index)
	prof.HandleFunc("/debug/pprof/profile", pprof.Profile)
	prof.HandleFunc("/debug/pprof/trace", pprof.Trace)
	prof.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.Handle("/debug/pprof/", adminapi.RequireToken(b.adminToken, prof))
	return mux, nil
}

// Problems lists why the broker is not ready (what /readyz reports): not started or closing,
// store closed, a listener not accepting, the disk below its reserve.
func (b *Broker) Problems() []string {
	var p []string
	if !b.ready.Load() {
		p = append(p, "not started")
	}
	if !b.st.Ready() || !b.store.Ready() {
		p = append(p, "store closed")
	}
	for _, id := range []string{ListenerMQTT, ListenerWS, ListenerTLS, ListenerWSS, ListenerHTTPWS} {
		if l, ok := b.mqtt.Listeners.Get(id); ok {
			if ml, ok := l.(mqttListener); ok {
				if why := ml.Problem(); why != "" {
					p = append(p, "listener "+id+": "+why)
				}
			}
		}
	}
	if why := b.disk.Problem(); why != "" {
		p = append(p, why)
	}
	return p
}

// Start starts the listeners and the HTTP endpoint and returns.
func (b *Broker) Start() error {
	if err := b.mqtt.Serve(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if b.httpSrv != nil {
		hd, err := b.httpHandler()
		if err != nil {
			return err
		}
		b.httpSrv.Handler = hd
		go func() {
			if err := b.httpSrv.Serve(b.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.log.Error("http", "error", err)
			}
		}()
	}
	if err := b.publishServerInfo(); err != nil {
		return err
	}
	b.ready.Store(true)
	b.log.Info("tern started", "version", Version, "epoch", b.epoch, "data", b.cfg.Data,
		"mqtt", b.Addr(ListenerMQTT), "ws", b.Addr(ListenerWS), "http", b.Addr(ListenerHTTP))
	return nil
}

// publishServerInfo retains im/sys/server {epoch, v, ts}: a new epoch tells
// devices the broker restarted. A cluster node publishes the cluster's
// record instead (announceServer).
func (b *Broker) publishServerInfo() error {
	if b.cl.js != nil {
		return b.announceServer()
	}
	p, err := json.Marshal(struct {
		Epoch uint64 `json:"epoch"`
		V     string `json:"v"`
		TS    int64  `json:"ts"`
	}{b.epoch, Version, time.Now().UnixMilli()})
	if err != nil {
		return err
	}
	return b.mqtt.Publish(topics.SysServer, p, true, 1)
}

// Run starts the broker and blocks until ctx is done, then closes it.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.Start(); err != nil {
		_ = b.Close() // report the start error
		return err
	}
	<-ctx.Done()
	b.log.Info("shutting down")
	return b.Close()
}

// Close stops the listeners (closing every session), the hooks and the
// HTTP endpoint, then flushes and closes the store.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.ready.Store(false)
		if b.cl.js != nil {
			b.cl.js.Closing() // last writes do not wait out an election
			b.stopServerWatch()
		}
		var errs []error
		if b.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, ignoreClosed(b.httpSrv.Shutdown(ctx)))
			cancel()
		} else if b.httpLn != nil {
			errs = append(errs, b.httpLn.Close())
		}
		if b.mqtt != nil {
			errs = append(errs, b.mqtt.Close())
			// Client goroutines may still be inside a hook; let them finish
			// before the store goes away.
			done := make(chan struct{})
			go func() { b.mqtt.Listeners.ClientsWg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				b.log.Warn("clients still closing after 5s; closing the store anyway")
			}
		}
		close(b.diskStop)
		b.diskWG.Wait()
		if b.search != nil {
			errs = append(errs, b.search.Close())
		}
		errs = append(errs, b.store.Close(), b.closeCluster())
		if b.audit != nil {
			errs = append(errs, b.audit.Close())
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Addr returns the bound address of a listener ("mqtt", "ws", "tls",
// "wss", "http"), or "" if it is disabled.
func (b *Broker) Addr(id string) string {
	if id == ListenerHTTP {
		if b.httpLn == nil {
			return ""
		}
		return b.httpLn.Addr().String()
	}
	if l, ok := b.mqtt.Listeners.Get(id); ok {
		return l.Address()
	}
	return ""
}

// Kick disconnects the live sessions of uid (only device did, if set) and
// returns how many it closed.
func (b *Broker) Kick(uid, did string) int {
	var victims []*mqtt.Client
	b.sessions.Range(func(cl *mqtt.Client, s *session.Session) bool {
		// A client already stopped (kicked a moment ago, or closing) is
		// not counted: it is leaving the session registry.
		if !s.Anonymous && s.UID == uid && (did == "" || s.DID == did) && !cl.Closed() {
			victims = append(victims, cl)
		}
		return true
	})
	for _, cl := range victims {
		if cl.Properties.ProtocolVersion == 5 {
			_ = b.mqtt.DisconnectClient(cl, packets.ErrAdministrativeAction) // closing regardless
		}
		cl.Stop(packets.ErrAdministrativeAction)
	}
	return len(victims)
}

// Watch subscribes the server itself to filter and calls fn with every
// matching message, retained ones first, bypassing the ACL: for tests and
// in-process tools. fn runs on the publisher's goroutine and must not
// block. The returned function ends the subscription.
func (b *Broker) Watch(filter string, fn func(topic string, payload []byte)) (func(), error) {
	id := int(b.watchID.Add(1))
	err := b.mqtt.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	})
	if err != nil {
		return nil, err
	}
	return func() {
		if err := b.mqtt.Unsubscribe(filter, id); err != nil {
			b.log.Debug("watch: unsubscribe", "topic", filter, "error", err)
		}
	}, nil
}

// OpenConnections returns the MQTT listeners' open TCP connections, as the
// connection caps count them (for tests and in-process tools).
func (b *Broker) OpenConnections() int { return b.gate.Open() }

// Sessions returns the registry of live sessions (for tests and
// in-process tools).
func (b *Broker) Sessions() *session.Registry { return b.sessions }

// Store returns the broker's Badger store (for tests and in-process
// tools); in cluster mode it holds only this node's file metadata (see
// IM).
func (b *Broker) Store() *store.Store { return b.store }

// IM returns the store of the IM core, Badger or JetStream.
func (b *Broker) IM() im.Store { return b.st }

// committed is told of every commit of the store (Badger, or the
// cluster's): it counts the appends, and wakes the search index without
// waiting for it. b.metrics and b.search are set before any client can
// cause an append.
func (b *Broker) committed(n int) {
	b.metrics.Committed(n)
	if b.search != nil {
		b.search.Kick()
	}
}

// Search returns the search index, nil when search is off (for tests
// and in-process tools).
func (b *Broker) Search() SearchIndex { return b.search }

// SearchIndex is the full-text index as the broker uses it: in the
// broker's process (search.Index) or in a child process at a low CPU
// priority (searchproc.Worker), as search.process says.
type SearchIndex interface {
	im.Searcher
	im.Forgetter
	// Kick says events were committed; it does not block.
	Kick()
	// Lag and Bytes are for metrics: see search.Index.
	Lag() time.Duration
	Bytes() int64
	// Wait returns once every event up to id is indexed (for tests).
	Wait(ctx context.Context, id ulid.ULID) error
	Close() error
}

// openSearch opens the index and starts it following src.
func openSearch(cfg *config.Config, src search.Source, log *slog.Logger) (SearchIndex, error) {
	o := SearchOptions(cfg, src, log)
	if cfg.Search.Process {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
			lv = slog.LevelInfo
		}
		w, err := searchproc.Start(searchproc.Options{
			Dir: SearchDir(cfg.Data), Index: o, Source: src, Priority: searchproc.Priority(cfg.Search.Priority), Log: log, Level: lv,
		})
		if err != nil {
			return nil, err
		}
		return w, nil
	}
	x, err := search.Open(SearchDir(cfg.Data), o)
	if err != nil {
		return nil, err
	}
	x.Start()
	return x, nil
}

// SearchDir is where the search index of data dir lives.
func SearchDir(data string) string { return filepath.Join(data, "search") }

// SearchOptions are the index options the broker uses over st (also
// for tern search reindex).
func SearchOptions(cfg *config.Config, st search.Source, log *slog.Logger) search.Options {
	return search.Options{
		Source: st, Batch: cfg.Search.Batch, Poll: cfg.Search.Poll, Settle: cfg.Search.Settle,
		// The store trims by the same retention, every minute.
		Retention: cfg.IM.Retention, PruneEvery: store.DefaultTrimEvery,
		Log: log,
	}
}

// SetLogLevel hands the broker the root logger's level so the admin API can
// change it at runtime. Call before Start.
func (b *Broker) SetLogLevel(lv *slog.LevelVar) { b.level = lv }

// Files returns the file service (for tests and in-process tools).
func (b *Broker) Files() *files.Service { return b.files }

// Accounts returns the account service (for tests and in-process tools).
func (b *Broker) Accounts() *accounts.Service { return b.accounts }

// AdminToken returns the admin API token in effect.
func (b *Broker) AdminToken() string { return b.adminToken }

// AuditDir returns the audit log's directory ("" when it is off).
func (b *Broker) AuditDir() string {
	if b.audit == nil {
		return ""
	}
	return AuditOptions(b.cfg, b.log).Dir
}

// Forgetters is where derived data (a search index, file references)
// registers to hear of events that retention removed or a delete purged
// (for tests and the features wired in build).
func (b *Broker) Forgetters() *im.Forgetters { return b.forget }

// Epoch returns this run's epoch.
func (b *Broker) Epoch() uint64 { return b.epoch }

// safeClose hands a listener Broker.closeClients when mochi closes it,
// instead of mochi's own closer: that one lists the listener's clients
// with Clients.GetByListener, which takes the clients' read lock twice
// (Len inside RLock) and deadlocks Server.Close when a connection is
// added or removed in between (mochi-mqtt/server#488; seen here as a
// test binary hanging for 10 minutes in Broker.Close).
type safeClose struct {
	mqttListener
	closeClients listeners.CloseFn
}

// Close closes the listener with the broker's closer.
func (l safeClose) Close(listeners.CloseFn) { l.mqttListener.Close(l.closeClients) }

// closeClients disconnects the clients of listener id, listing them under
// one read lock (Clients.GetAll).
func (b *Broker) closeClients(id string) {
	for _, cl := range b.mqtt.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = b.mqtt.DisconnectClient(cl, packets.ErrServerShuttingDown) // closing regardless
		}
	}
}

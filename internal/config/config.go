// Package config is Tern's typed configuration: the built-in defaults, a
// strict YAML loader over them, environment overrides and validation.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tern-im/tern/topics"
)

// Config is the whole configuration of a Tern node.
type Config struct {
	// Data is the directory of the embedded Badger store.
	Data string `yaml:"data"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (logfmt-style key=value) or json (one object a
	// line).
	LogFormat string `yaml:"log_format"`
	// AdminToken authorises the HTTP admin API. Empty means: read it from
	// TERN_ADMIN_TOKEN, else from {data}/admin.token, creating that file
	// (mode 0600) on first start.
	AdminToken string `yaml:"admin_token"`

	MQTT   Listener `yaml:"mqtt"`
	WS     Listener `yaml:"ws"`
	TLS    Listener `yaml:"tls"`
	WSS    Listener `yaml:"wss"`
	HTTP   HTTP     `yaml:"http"`
	Limits Limits   `yaml:"limits"`
	Auth   Auth     `yaml:"auth"`
	Store  Store    `yaml:"store"`
	ACL    ACL      `yaml:"acl"`
	IM     IM       `yaml:"im"`
	Compat Compat   `yaml:"compat"`

	Presence Presence `yaml:"presence"`
	Files    Files    `yaml:"files"`
	Search   Search   `yaml:"search"`

	Audit   Audit   `yaml:"audit"`
	DLP     DLP     `yaml:"dlp"`
	Cluster Cluster `yaml:"cluster"`
}

// Listener is one MQTT listener. An empty Addr disables it.
type Listener struct {
	Addr string `yaml:"addr"`
	// Anonymous admits clients without credentials on this listener; they
	// only reach the plain namespace, as the acl rules allow.
	Anonymous bool `yaml:"anonymous"`
	// Cert and Key are PEM files; required for tls and wss listeners.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA, when set, makes the listener verify client certificates
	// against this PEM bundle (mTLS). RequireClientCert refuses clients
	// that present none.
	ClientCA          string `yaml:"client_ca"`
	RequireClientCert bool   `yaml:"require_client_cert"`
}

// HTTP is the web listener: the web client at /, MQTT over WebSocket at
// /mqtt (anonymous as WS), /v1/, health, metrics and the admin API. An
// empty Addr disables it.
type HTTP struct {
	Addr string `yaml:"addr"`
}

// Limits are the MQTT capabilities Tern sets on purpose (see broker).
type Limits struct {
	MaxPacketSize ByteSize `yaml:"max_packet_size"`
	// MaxSessionExpiry caps what MQTT 5 clients ask for; 3.1.1 persistent
	// sessions are kept this long too.
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry"`
	// MaxMessageExpiry caps MQTT 5 message expiry. 0 means messages
	// (retained presence and keys included) never expire by themselves.
	MaxMessageExpiry time.Duration `yaml:"max_message_expiry"`
	// MaxKeepalive is the largest keepalive accepted; larger requests are
	// answered with this value as server keepalive. 0 means no cap.
	MaxKeepalive time.Duration `yaml:"max_keepalive"`
	// WriteQueue is the number of packets queued per client before mochi
	// drops deliveries (the stream and sync recover them).
	WriteQueue int `yaml:"write_queue"`
	// ReadBuffer and WriteBuffer size each connection's bufio buffers.
	ReadBuffer  ByteSize `yaml:"read_buffer"`
	WriteBuffer ByteSize `yaml:"write_buffer"`
	// ReceiveMaximum is the number of unacknowledged QoS>0 publishes a
	// client may have in flight towards the broker.
	ReceiveMaximum int `yaml:"receive_maximum"`
	// MaxInflight is the number of QoS>0 deliveries held per client.
	MaxInflight int `yaml:"max_inflight"`
	// TopicAliasMaximum is the number of inbound topic aliases per client.
	TopicAliasMaximum int `yaml:"topic_alias_maximum"`
	// ConnectTimeout closes connections that have not completed CONNECT
	// in this time (slow or half-open clients hold no resources for long).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxClients refuses connections beyond this count. 0 means no limit.
	MaxClients int `yaml:"max_clients"`
	// MaxConnections caps open TCP connections over all MQTT listeners;
	// beyond it new ones are closed at accept, before TLS or MQTT. 0
	// means no cap (the process's open-file limit is the only one).
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps open connections per source address,
	// refused the same way. 0 means no cap.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// ConnectRatePerIP and ConnectBurstPerIP size a token bucket of
	// connection attempts per source address: a burst, then this many
	// per second. ConnectRatePerIP 0 means no rate limit.
	ConnectRatePerIP  float64 `yaml:"connect_rate_per_ip"`
	ConnectBurstPerIP int     `yaml:"connect_burst_per_ip"`
	// MaxSubscriptions caps the filters one client holds; beyond it SUBACK
	// answers 0x97 (MQTT 5) or 0x80 (3.1.1). 0 means no cap.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxInflightBytes caps the topic and payload bytes of the QoS>0
	// deliveries held for one client (awaiting PUBACK, or queued while its
	// session is offline); beyond it the oldest are dropped and counted.
	// 0 means no cap.
	MaxInflightBytes ByteSize `yaml:"max_inflight_bytes"`
}

// Auth tunes authentication.
type Auth struct {
	// MaxFailures is how many wrong passwords per (address, user) are
	// allowed before lockouts start; 4× that per address and per user.
	// Valid device tokens are never locked out (docs/security.md).
	MaxFailures int `yaml:"max_failures"`
	// Lockout is the first lockout; each further failure doubles it up to
	// MaxLockout.
	Lockout    time.Duration `yaml:"lockout"`
	MaxLockout time.Duration `yaml:"max_lockout"`
	// SessionSweep is how often sessions of connections that closed
	// without a disconnect event (a failed CONNACK write) are looked for;
	// one found twice in a row is removed.
	SessionSweep time.Duration `yaml:"session_sweep"`
	// Argon2 parameters for new password hashes.
	Argon2Time    uint32   `yaml:"argon2_time"`
	Argon2Memory  ByteSize `yaml:"argon2_memory"`
	Argon2Threads uint8    `yaml:"argon2_threads"`
}

// Store tunes Badger.
type Store struct {
	// SyncWrites fsyncs every commit before its appends are acknowledged:
	// power-loss durability. The sequencer's group commit takes one fsync
	// per batch, so the cost is latency (one fsync) more than throughput
	// (docs/bench.md). Without it a process crash (kill -9) still loses
	// nothing acknowledged; an OS crash or power loss can.
	SyncWrites bool `yaml:"sync_writes"`
	// GCInterval is how often the value-log GC runs. 0 disables it.
	GCInterval time.Duration `yaml:"gc_interval"`
	// MemTableSize and BlockCache bound Badger's memory.
	MemTableSize ByteSize `yaml:"memtable_size"`
	BlockCache   ByteSize `yaml:"block_cache"`
	// MinFree and MinFreePercent set the disk reserve: when the data
	// dir's filesystem has less free space than the smaller of MinFree
	// and MinFreePercent of its size, every write is refused (err 507,
	// PUBACK 0x97) and /readyz says not ready, until space returns.
	// MinFree 0 means no reserve.
	MinFree        ByteSize `yaml:"min_free"`
	MinFreePercent float64  `yaml:"min_free_percent"`
	// DiskCheck is how often free space is measured.
	DiskCheck time.Duration `yaml:"disk_check"`
}

// Cluster runs the node as one of several serving one namespace, with
// the shared state in NATS JetStream (PROTOCOL §17, docs/cluster.md).
// An empty Name is single-node mode on Badger, the default.
type Cluster struct {
	// Name is the cluster's name; every node of a cluster gives the same.
	Name string `yaml:"name"`
	// Node is this node's name, unique in the cluster ([A-Za-z0-9_-]).
	Node string `yaml:"node"`
	// NATSListen is the route listener (host:port) of the NATS JetStream
	// server embedded in this node; its files live in {data}/nats.
	NATSListen string `yaml:"nats_listen"`
	// NATSRoutes are the other nodes' route URLs (nats://host:port).
	NATSRoutes []string `yaml:"nats_routes"`
	// NATSAdvertise is the route address (host:port) other nodes are told
	// to reach this node at, when it differs from nats_listen (NAT, a
	// proxy). Empty: the listen address.
	NATSAdvertise string `yaml:"nats_advertise"`
	// NATSURL uses an existing NATS cluster instead of an embedded
	// server (exclusive with nats_listen).
	NATSURL string `yaml:"nats_url"`
	// NATSClient, when set, also opens the embedded server's client port
	// (host:port) for tools such as the nats CLI. Tern itself connects
	// in-process.
	NATSClient string `yaml:"nats_client"`
	// Replicas of the log stream and every KV bucket: 3 keeps every
	// acknowledged event through the loss of one node.
	Replicas int `yaml:"replicas"`
	// Heartbeat is how often a node tells the others it is alive.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// NodeTimeout is how long a node may go unheard before the others
	// take it as gone: they drop its devices' connections, whose users
	// go off after presence.grace. At least twice heartbeat.
	NodeTimeout time.Duration `yaml:"node_timeout"`
}

// Enabled reports whether the node runs in cluster mode.
func (c Cluster) Enabled() bool { return c.Name != "" }

// ACL holds the plain-namespace rules (outside im/).
type ACL struct {
	Rules []Rule `yaml:"rules"`
}

// Rule is the YAML form of topics.Rule.
type Rule struct {
	Filter    string   `yaml:"filter"`
	Access    string   `yaml:"access"` // read, write, readwrite or deny
	Users     []string `yaml:"users"`  // user ids; "all" for every authenticated user
	Anonymous bool     `yaml:"anonymous"`
}

// IM configures the messaging layer.
type IM struct {
	// DMPolicy is "open" (anyone may message anyone) or "contacts" (only
	// users who have the sender in C(recipient): their contacts and
	// co-members of their groups). Blocks always win.
	DMPolicy string `yaml:"dm_policy"`
	// MaxBody is the largest message body (b); larger sends get 413.
	MaxBody ByteSize `yaml:"max_body"`
	// RateBurst and RatePerSec size the token bucket of msg commands per
	// device: RateBurst at once, RatePerSec sustained; beyond it 429.
	RateBurst  int `yaml:"rate_burst"`
	RatePerSec int `yaml:"rate_per_sec"`
	// MaxGroupMembers caps the size of a group.
	MaxGroupMembers int `yaml:"max_group_members"`
	// RPCReadBurst and RPCReadPerSec size the token bucket of read RPCs
	// (hello, sync, history, conv.list, msg.get, presence.get,
	// contacts.list, group.members) per device; beyond it err 429.
	RPCReadBurst  int `yaml:"rpc_read_burst"`
	RPCReadPerSec int `yaml:"rpc_read_per_sec"`
	// RPCWriteBurst and RPCWritePerMin size the token bucket of write RPCs
	// (group.*, contacts.* changes) per device; beyond it err 429.
	RPCWriteBurst  int `yaml:"rpc_write_burst"`
	RPCWritePerMin int `yaml:"rpc_write_per_min"`
	// MaxGroupsOwned caps the groups one user owns; group.create and
	// taking over ownership beyond it get err 403. 0 means no cap.
	MaxGroupsOwned int `yaml:"max_groups_owned"`
	// GroupAddsBurst and GroupAddsPerHour size a token bucket per user of
	// being added to groups by others (group.create members, group.add);
	// beyond it the adder gets err 429.
	GroupAddsBurst   int `yaml:"group_adds_burst"`
	GroupAddsPerHour int `yaml:"group_adds_per_hour"`
	// Retention is how long stream entries and conversation events are
	// kept; older ones are trimmed in the background (every TrimEvery) and
	// a sync from a cursor before what is kept answers reset. 0 means
	// everything is kept forever.
	Retention time.Duration `yaml:"retention"`
	// TrimEvery is how often retention runs (im.retention and the
	// conversations' own); in a cluster on one node at a time, the
	// holder of the trimmer lease (docs/cluster.md).
	TrimEvery time.Duration `yaml:"trim_every"`
	// CommitBacklog bounds the committed events waiting for live
	// delivery (the commit stream). When delivery falls that far behind,
	// senders wait for room before their PUBACK (backpressure) instead of
	// queues growing. Every acknowledged event still waiting here adds
	// to the latency of the next send, so it is kept short: enough to
	// keep the delivery workers busy (docs/bench.md measures 64, 256 and
	// 4,096).
	CommitBacklog int `yaml:"commit_backlog"`
}

// Presence tunes im/p/{uid} (PROTOCOL §8).
type Presence struct {
	// Grace is how long a user whose last device went stays published as
	// online; a device back within it changes nothing. 0 means off is
	// published as soon as the last device goes.
	Grace time.Duration `yaml:"grace"`
	// Coalesce is the least time between two publications of one user's
	// presence; changes in between are merged into one. 0 means every
	// change is published at once. It must not exceed Grace, so that off
	// is never held back beyond the grace period.
	Coalesce time.Duration `yaml:"coalesce"`
}

// Files configures file storage (PROTOCOL §11, §15): blobs under
// {data}/files, metadata in the store.
type Files struct {
	// MaxSize is the largest file; larger uploads get 413.
	MaxSize ByteSize `yaml:"max_size"`
	// Quota is what each user may have stored, uploads in progress
	// included; beyond it 413. 0 means no quota.
	Quota ByteSize `yaml:"quota"`
	// UploadExpiry is how long an upload may stay uncommitted, and a
	// committed file unattached to any message, before it is removed.
	UploadExpiry time.Duration `yaml:"upload_expiry"`
	// Sweep is how often expired uploads and files are looked for.
	Sweep time.Duration `yaml:"sweep"`
	// MaxPixels is the largest image (width × height) decoded for a
	// thumbnail: larger ones (decompression bombs among them) get none.
	MaxPixels int64 `yaml:"max_pixels"`
	// UploadRate is the chunk bytes per second each device may upload
	// over MQTT, in bursts of UploadBurst; beyond it chunks get 429.
	// 0 means no limit.
	UploadRate  ByteSize `yaml:"upload_rate"`
	UploadBurst ByteSize `yaml:"upload_burst"`
}

// Search configures the full-text index of messages (PROTOCOL §15,
// docs/search.md).
type Search struct {
	// Enabled keeps the index in {data}/search and answers the search
	// RPC; false keeps no index and answers search with 501.
	Enabled bool `yaml:"enabled"`
	// Batch is how many committed events are indexed together.
	Batch int `yaml:"batch"`
	// Poll is how often the index looks for events when no commit woke
	// it (each commit does); 0 means only commits wake it.
	Poll time.Duration `yaml:"poll"`
	// Settle is the least time between two indexing passes: what is
	// committed meanwhile is indexed together, which costs the broker far
	// less CPU than a pass per commit. It is also about how far search
	// lags behind sends. 0 means a pass per commit.
	Settle time.Duration `yaml:"settle"`
	// Process keeps the index in a child process (the same binary) at
	// CPU priority Priority: the kernel then gives the broker's send path
	// the cores first, and the index what is left. false keeps the index
	// in the broker's own process, where it competes with the send path
	// as an equal.
	Process bool `yaml:"process"`
	// Priority is the child's: "idle" (Linux SCHED_IDLE: only CPU time
	// nothing else wants, and a waking broker thread preempts it at once),
	// "low" (nice 19) or "normal" (as the broker).
	Priority string `yaml:"priority"`
}

// Compat switches on behaviours that strict test suites expect of a
// generic broker; Tern's own devices do not need them.
type Compat struct {
	// PassiveDisconnect leaves the connection open after sending a
	// DISCONNECT for receive-maximum overflow (the Paho suite expects it).
	PassiveDisconnect bool `yaml:"passive_disconnect"`
	// ObscureNotAuthorized answers a refused SUBSCRIBE with 0x80
	// (unspecified error) instead of 0x87 (not authorized) for MQTT 5.
	ObscureNotAuthorized bool `yaml:"obscure_not_authorized"`
}

// DefaultConfig returns the built-in defaults: PROTOCOL §14.
func DefaultConfig() *Config {
	return &Config{
		Data:      "./data",
		LogLevel:  "info",
		LogFormat: "text",
		MQTT:      Listener{Addr: ":1883"},
		WS:        Listener{Addr: ":8083"},
		HTTP:      HTTP{Addr: ":8080"},
		Limits: Limits{
			MaxPacketSize:     128 << 10,
			MaxSessionExpiry:  24 * time.Hour,
			MaxMessageExpiry:  0,
			MaxKeepalive:      20 * time.Minute,
			WriteQueue:        256,
			ReadBuffer:        1 << 10,
			WriteBuffer:       1 << 10,
			ReceiveMaximum:    64,
			MaxInflight:       2048,
			TopicAliasMaximum: 32,
			ConnectTimeout:    10 * time.Second,
			MaxSubscriptions:  1000,
			MaxInflightBytes:  1 << 20,
		},
		Auth: Auth{
			MaxFailures:   5,
			Lockout:       time.Second,
			MaxLockout:    5 * time.Minute,
			SessionSweep:  time.Minute,
			Argon2Time:    2,
			Argon2Memory:  19 << 20,
			Argon2Threads: 1,
		},
		Store: Store{
			SyncWrites:     true,
			GCInterval:     5 * time.Minute,
			MemTableSize:   16 << 20,
			BlockCache:     32 << 20,
			MinFree:        1 << 30,
			MinFreePercent: 5,
			DiskCheck:      time.Second,
		},
		ACL: ACL{Rules: []Rule{}},
		IM: IM{
			DMPolicy:         "open",
			MaxBody:          8 << 10,
			RateBurst:        500,
			RatePerSec:       100,
			MaxGroupMembers:  5000,
			RPCReadBurst:     200,
			RPCReadPerSec:    50,
			RPCWriteBurst:    30,
			RPCWritePerMin:   60,
			MaxGroupsOwned:   100,
			GroupAddsBurst:   20,
			GroupAddsPerHour: 30,
			CommitBacklog:    256,
			TrimEvery:        time.Minute,
		},
		Presence: Presence{Grace: 10 * time.Second, Coalesce: 2 * time.Second},
		Files: Files{
			MaxSize:      100 << 20,
			Quota:        1 << 30,
			UploadExpiry: 24 * time.Hour,
			Sweep:        10 * time.Minute,
			MaxPixels:    24_000_000,
			UploadRate:   1 << 20,
			UploadBurst:  4 << 20,
		},
		Search:  Search{Enabled: true, Batch: 1000, Poll: time.Second, Settle: 250 * time.Millisecond, Process: true, Priority: "idle"},
		Audit:   defaultAudit(),
		DLP:     defaultDLP(),
		Cluster: Cluster{NATSRoutes: []string{}, Replicas: 3, Heartbeat: time.Second, NodeTimeout: 5 * time.Second},
	}
}

// Load reads a YAML file strictly over DefaultConfig.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Decode reads YAML strictly (unknown keys are errors) over DefaultConfig.
func Decode(r io.Reader) (*Config, error) {
	cfg := DefaultConfig()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return cfg, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, plainError(b, err)
	}
	return cfg, nil
}

// ApplyEnv overrides fields from the TERN_* variables of PROTOCOL §14.
// A variable that is set but empty disables a listener.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) {
	for name, p := range map[string]*string{
		"TERN_DATA":        &c.Data,
		"TERN_MQTT_ADDR":   &c.MQTT.Addr,
		"TERN_WS_ADDR":     &c.WS.Addr,
		"TERN_HTTP_ADDR":   &c.HTTP.Addr,
		"TERN_ADMIN_TOKEN": &c.AdminToken,
		"TERN_CLUSTER":     &c.Cluster.Name,
		"TERN_NODE":        &c.Cluster.Node,
		"TERN_NATS_LISTEN": &c.Cluster.NATSListen,
		"TERN_NATS_URL":    &c.Cluster.NATSURL,
	} {
		if v, ok := lookup(name); ok {
			*p = v
		}
	}
	if v, ok := lookup("TERN_NATS_ROUTES"); ok {
		c.Cluster.NATSRoutes = SplitList(v)
	}
}

// SplitList splits a comma-separated list (TERN_NATS_ROUTES,
// --nats-routes), dropping empty items.
func SplitList(v string) []string {
	out := []string{}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Validate reports every invalid field, each error naming it.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if c.Data == "" {
		bad("data", "must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format", "%q is not one of text, json", c.LogFormat)
	}
	for name, l := range map[string]Listener{"tls": c.TLS, "wss": c.WSS} {
		if l.Addr != "" && (l.Cert == "" || l.Key == "") {
			bad(name, "cert and key are required when addr is set")
		}
	}
	for name, l := range map[string]Listener{"mqtt": c.MQTT, "ws": c.WS} {
		if l.Cert != "" || l.Key != "" || l.ClientCA != "" {
			bad(name, "cert, key and client_ca belong on the tls and wss listeners")
		}
	}
	for name, l := range map[string]Listener{"tls": c.TLS, "wss": c.WSS} {
		if l.RequireClientCert && l.ClientCA == "" {
			bad(name+".require_client_cert", "needs client_ca")
		}
	}
	lim := c.Limits
	if lim.MaxPacketSize < 1<<10 || lim.MaxPacketSize > 256<<20 {
		bad("limits.max_packet_size", "%s is outside 1KiB..256MiB", lim.MaxPacketSize)
	}
	if lim.MaxSessionExpiry < 0 || lim.MaxSessionExpiry > time.Duration(1<<32-1)*time.Second {
		bad("limits.max_session_expiry", "%s is out of range", lim.MaxSessionExpiry)
	}
	if lim.MaxMessageExpiry < 0 {
		bad("limits.max_message_expiry", "must not be negative")
	}
	if lim.MaxKeepalive < 0 || lim.MaxKeepalive > 65535*time.Second {
		bad("limits.max_keepalive", "%s is outside 0..65535s", lim.MaxKeepalive)
	}
	if lim.WriteQueue < 1 {
		bad("limits.write_queue", "must be at least 1")
	}
	if lim.ReadBuffer < 256 || lim.WriteBuffer < 256 {
		bad("limits.read_buffer/write_buffer", "must be at least 256B")
	}
	if lim.ReceiveMaximum < 1 || lim.ReceiveMaximum > 65535 {
		bad("limits.receive_maximum", "%d is outside 1..65535", lim.ReceiveMaximum)
	}
	if lim.MaxInflight < 1 || lim.MaxInflight > 65535 {
		bad("limits.max_inflight", "%d is outside 1..65535", lim.MaxInflight)
	}
	if lim.TopicAliasMaximum < 0 || lim.TopicAliasMaximum > 65535 {
		bad("limits.topic_alias_maximum", "%d is outside 0..65535", lim.TopicAliasMaximum)
	}
	if lim.ConnectTimeout <= 0 {
		bad("limits.connect_timeout", "must be positive")
	}
	if lim.MaxClients < 0 {
		bad("limits.max_clients", "must not be negative")
	}
	if lim.MaxConnections < 0 {
		bad("limits.max_connections", "must not be negative")
	}
	if lim.MaxConnectionsPerIP < 0 {
		bad("limits.max_connections_per_ip", "must not be negative")
	}
	if lim.ConnectRatePerIP < 0 {
		bad("limits.connect_rate_per_ip", "must not be negative")
	}
	if lim.ConnectRatePerIP > 0 && lim.ConnectBurstPerIP < 1 {
		bad("limits.connect_burst_per_ip", "must be at least 1 when connect_rate_per_ip is set")
	}
	if lim.MaxSubscriptions < 0 {
		bad("limits.max_subscriptions", "must not be negative")
	}
	if lim.MaxInflightBytes != 0 && lim.MaxInflightBytes < lim.MaxPacketSize {
		bad("limits.max_inflight_bytes", "%s is below max_packet_size (%s); 0 means no cap", lim.MaxInflightBytes, lim.MaxPacketSize)
	}
	a := c.Auth
	if a.MaxFailures < 1 {
		bad("auth.max_failures", "must be at least 1")
	}
	if a.Lockout <= 0 || a.MaxLockout < a.Lockout {
		bad("auth.lockout", "needs 0 < lockout <= max_lockout")
	}
	if a.SessionSweep <= 0 {
		bad("auth.session_sweep", "must be positive")
	}
	if a.Argon2Time < 1 || a.Argon2Memory < 1<<20 || a.Argon2Threads < 1 {
		bad("auth.argon2_*", "need time >= 1, memory >= 1MiB, threads >= 1")
	}
	if c.Store.GCInterval < 0 {
		bad("store.gc_interval", "must not be negative")
	}
	if c.Store.MemTableSize < 1<<20 {
		bad("store.memtable_size", "must be at least 1MiB")
	}
	if c.Store.BlockCache < 0 {
		bad("store.block_cache", "must not be negative")
	}
	if c.Store.MinFree < 0 {
		bad("store.min_free", "must not be negative")
	}
	if p := c.Store.MinFreePercent; p <= 0 || p > 50 {
		bad("store.min_free_percent", "%g is outside (0, 50]", p)
	}
	if c.Store.DiskCheck <= 0 {
		bad("store.disk_check", "must be positive")
	}
	for i, r := range c.ACL.Rules {
		if _, err := r.Compile(); err != nil {
			bad(fmt.Sprintf("acl.rules[%d]", i), "%v", err)
		}
	}
	switch c.IM.DMPolicy {
	case "open", "contacts":
	default:
		bad("im.dm_policy", "%q is not open or contacts", c.IM.DMPolicy)
	}
	if c.IM.MaxBody < 1 || c.IM.MaxBody > c.Limits.MaxPacketSize/2 {
		bad("im.max_body", "%s is outside 1B..max_packet_size/2", c.IM.MaxBody)
	}
	if c.IM.RateBurst < 1 {
		bad("im.rate_burst", "must be at least 1")
	}
	if c.IM.RatePerSec < 1 {
		bad("im.rate_per_sec", "must be at least 1")
	}
	if c.IM.MaxGroupMembers < 2 {
		bad("im.max_group_members", "must be at least 2")
	}
	for name, v := range map[string]int{
		"im.rpc_read_burst": c.IM.RPCReadBurst, "im.rpc_read_per_sec": c.IM.RPCReadPerSec,
		"im.rpc_write_burst": c.IM.RPCWriteBurst, "im.rpc_write_per_min": c.IM.RPCWritePerMin,
		"im.group_adds_burst": c.IM.GroupAddsBurst, "im.group_adds_per_hour": c.IM.GroupAddsPerHour,
	} {
		if v < 1 {
			bad(name, "must be at least 1")
		}
	}
	if c.IM.MaxGroupsOwned < 0 {
		bad("im.max_groups_owned", "must not be negative")
	}
	if c.IM.Retention < 0 {
		bad("im.retention", "must not be negative")
	}
	if c.IM.TrimEvery < 100*time.Millisecond || c.IM.TrimEvery > time.Hour {
		bad("im.trim_every", "must be 100ms to 1h")
	}
	if c.IM.CommitBacklog < 1 {
		bad("im.commit_backlog", "must be at least 1")
	}
	if p := c.Presence; p.Grace < 0 {
		bad("presence.grace", "must not be negative")
	} else if p.Coalesce < 0 || p.Coalesce > p.Grace {
		bad("presence.coalesce", "%s is outside 0..presence.grace (%s)", p.Coalesce, p.Grace)
	}
	f := c.Files
	if f.MaxSize < 1 {
		bad("files.max_size", "must be at least 1B")
	}
	if f.Quota < 0 {
		bad("files.quota", "must not be negative")
	}
	if f.UploadExpiry <= 0 {
		bad("files.upload_expiry", "must be positive")
	}
	if f.Sweep <= 0 {
		bad("files.sweep", "must be positive")
	}
	if f.MaxPixels < 1 {
		bad("files.max_pixels", "must be at least 1")
	}
	if f.UploadRate < 0 {
		bad("files.upload_rate", "must not be negative")
	}
	if f.UploadRate > 0 && f.UploadBurst < c.Limits.MaxPacketSize {
		bad("files.upload_burst", "%s is less than limits.max_packet_size (%s): a whole chunk must fit", f.UploadBurst, c.Limits.MaxPacketSize)
	}
	if c.Search.Batch < 1 || c.Search.Batch > 100000 {
		bad("search.batch", "must be 1 to 100000")
	}
	if c.Search.Poll < 0 {
		bad("search.poll", "must not be negative")
	}
	if c.Search.Settle < 0 || c.Search.Settle > time.Minute {
		bad("search.settle", "must be 0 to 1m")
	}
	switch c.Search.Priority {
	case "idle", "low", "normal":
	default:
		if c.Search.Process {
			bad("search.priority", "must be idle, low or normal")
		}
	}
	c.validateCompliance(bad)
	c.Cluster.validate(bad)
	return errors.Join(errs...)
}

func (c Cluster) validate(bad func(field, format string, args ...any)) {
	if !c.Enabled() {
		if c.Node != "" || c.NATSListen != "" || c.NATSURL != "" || len(c.NATSRoutes) > 0 || c.NATSClient != "" || c.NATSAdvertise != "" {
			bad("cluster.name", "must be set when any other cluster key is")
		}
		return
	}
	if !isName(c.Name) {
		bad("cluster.name", "%q must be 1-64 of [A-Za-z0-9_-]", c.Name)
	}
	if !isName(c.Node) {
		bad("cluster.node", "%q must be 1-64 of [A-Za-z0-9_-]", c.Node)
	}
	switch {
	case c.NATSListen == "" && c.NATSURL == "":
		bad("cluster.nats_listen", "one of nats_listen (embedded) and nats_url (external) is required")
	case c.NATSListen != "" && c.NATSURL != "":
		bad("cluster.nats_url", "excludes nats_listen")
	}
	if c.NATSURL != "" && (len(c.NATSRoutes) > 0 || c.NATSClient != "" || c.NATSAdvertise != "") {
		bad("cluster.nats_routes", "routes, nats_client and nats_advertise belong to the embedded server (nats_listen)")
	}
	for i, r := range c.NATSRoutes {
		if u, err := url.Parse(r); err != nil || u.Scheme != "nats" || u.Host == "" {
			bad(fmt.Sprintf("cluster.nats_routes[%d]", i), "%q is not nats://host:port", r)
		}
	}
	if c.Heartbeat <= 0 {
		bad("cluster.heartbeat", "must be positive")
	} else if c.NodeTimeout < 2*c.Heartbeat {
		bad("cluster.node_timeout", "%v must be at least twice cluster.heartbeat (%v)", c.NodeTimeout, c.Heartbeat)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("cluster.replicas", "%d is outside 1..5", c.Replicas)
	} else if c.NATSListen != "" && c.Replicas > len(c.NATSRoutes)+1 {
		bad("cluster.replicas", "%d needs at least %d nats_routes", c.Replicas, c.Replicas-1)
	}
}

func isName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Compile turns a YAML rule into a topics.Rule.
func (r Rule) Compile() (topics.Rule, error) {
	out := topics.Rule{Filter: r.Filter, Users: r.Users, Anonymous: r.Anonymous}
	switch strings.ToLower(r.Access) {
	case "read":
		out.Access = topics.Read
	case "write":
		out.Access = topics.Write
	case "readwrite":
		out.Access = topics.ReadWrite
	case "deny":
		out.Access = topics.Deny
	default:
		return out, fmt.Errorf("access %q is not read, write, readwrite or deny", r.Access)
	}
	if r.Filter == "" || strings.HasPrefix(r.Filter, "$") || r.Filter == "im" || strings.HasPrefix(r.Filter, topics.Root) {
		return out, fmt.Errorf("filter %q must be a non-empty filter outside im/ and $", r.Filter)
	}
	if i := strings.IndexByte(r.Filter, '#'); i >= 0 && i != len(r.Filter)-1 {
		return out, fmt.Errorf("filter %q has # before its end", r.Filter)
	}
	if len(r.Users) == 0 && !r.Anonymous {
		return out, fmt.Errorf("filter %q applies to nobody: set users and/or anonymous", r.Filter)
	}
	return out, nil
}

// Rules compiles every ACL rule; call after Validate.
func (c *Config) Rules() []topics.Rule {
	out := make([]topics.Rule, 0, len(c.ACL.Rules))
	for _, r := range c.ACL.Rules {
		tr, err := r.Compile()
		if err == nil {
			out = append(out, tr)
		}
	}
	return out
}

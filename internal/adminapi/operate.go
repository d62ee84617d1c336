package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tern-im/tern/internal/audit"
	"github.com/tern-im/tern/topics"
)

// ClientInfo is one connected client in GET /admin/v1/clients.
type ClientInfo struct {
	// Node is the cluster node the client is connected to (cluster mode).
	Node     string    `json:"node,omitempty"`
	UID      string    `json:"uid"` // empty for an anonymous client
	DID      string    `json:"did"`
	ClientID string    `json:"client_id"`
	Addr     string    `json:"addr"`     // remote address
	Proto    string    `json:"proto"`    // "mqtt/3.1.1", "mqtt/5", "mqtt/3.1"
	Listener string    `json:"listener"` // mqtt, ws, tls or wss
	Since    time.Time `json:"since"`    // when the connection was accepted
}

// Stats is the reply to GET /admin/v1/stats.
type Stats struct {
	// Node is the cluster node that reports (cluster mode).
	Node          string    `json:"node,omitempty"`
	Version       string    `json:"version"`
	Commit        string    `json:"commit"`
	GoVersion     string    `json:"go_version"`
	Started       time.Time `json:"started"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Connections   int       `json:"connections"`   // authenticated connections
	Subscriptions int64     `json:"subscriptions"` // MQTT subscriptions
	Retained      int64     `json:"retained"`      // retained messages
	BytesIn       int64     `json:"bytes_in"`
	BytesOut      int64     `json:"bytes_out"`
	StoreBytes    int64     `json:"store_bytes"` // Badger on disk
}

// Notice is the body of POST /admin/v1/notice and what is retained on
// im/sys/notice (TS in Unix milliseconds, set by the server).
type Notice struct {
	Text string `json:"text"`
	TS   int64  `json:"ts,omitempty"`
}

// MaxNotice is the longest notice text in bytes: retained payloads on
// shared topics stay within 1 KiB (PROTOCOL §13).
const MaxNotice = 900

// ErrNoticeText is the refusal of an empty or too long notice.
var ErrNoticeText = errors.New("adminapi: notice text must be 1 to 900 bytes of UTF-8")

// Operator is what the operations routes need from the running broker.
type Operator interface {
	// Clients lists the connected clients.
	Clients() []ClientInfo
	// Stats reports the broker's state.
	Stats() Stats
	// Notice retains n on im/sys/notice and returns it with its ts.
	Notice(text string) (Notice, error)
}

// ClusterStatus is the reply to GET /admin/v1/cluster (tern cluster
// status): the node asked, and the cluster's JetStream assets with their
// leaders, replicas and lag.
type ClusterStatus struct {
	Cluster string         `json:"cluster"`
	Node    string         `json:"node"`
	Nodes   []string       `json:"nodes"` // every node that leads or replicates an asset
	Streams []StreamStatus `json:"streams"`
}

// StreamStatus is one JetStream asset (the log stream, a KV bucket).
type StreamStatus struct {
	Name     string    `json:"name"`
	Leader   string    `json:"leader"`
	Replicas []Replica `json:"replicas"`
	Msgs     uint64    `json:"msgs"`
	Bytes    uint64    `json:"bytes"`
}

// Replica is one follower of an asset: whether it is current, how many
// operations it lags, and how long ago the leader heard from it.
type Replica struct {
	Name     string `json:"name"`
	Current  bool   `json:"current"`
	Offline  bool   `json:"offline,omitempty"`
	Lag      uint64 `json:"lag"`
	ActiveMS int64  `json:"active_ms"`
}

// Clusterer is what GET /admin/v1/cluster… needs; an Operator that is
// not one (a single node) answers 404. The cluster-wide views gather
// every node's own (each with its node); a node that did not answer in
// time is missing.
type Clusterer interface {
	ClusterStatus() (ClusterStatus, error)
	ClusterClients() ([]ClientInfo, error)
	ClusterStats() ([]Stats, error)
}

// KickResult is the reply to DELETE /admin/v1/clients/{uid}.{did}.
type KickResult struct {
	Kicked int `json:"kicked"`
}

func (h *Handler) ops(w http.ResponseWriter) bool {
	if h.Ops == nil {
		writeErr(w, http.StatusNotFound, "operations are not available in this process")
		return false
	}
	return true
}

func (h *Handler) listClients(w http.ResponseWriter, _ *http.Request) {
	if h.ops(w) {
		cs := h.Ops.Clients()
		if cs == nil {
			cs = []ClientInfo{}
		}
		writeJSON(w, http.StatusOK, cs)
	}
}

func (h *Handler) kickClient(w http.ResponseWriter, r *http.Request) {
	uid, did, err := topics.ParseClientID(r.PathValue("id"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "want {uid}.{did}: "+err.Error())
		return
	}
	n := h.Kicker.Kick(uid, did)
	h.auditAs(r, audit.Entry{Type: audit.AdminKick, UID: uid, DID: did, Reason: fmt.Sprintf("kicked %d", n)}, nil)
	if n == 0 {
		writeErr(w, http.StatusNotFound, "no such client connected")
		return
	}
	h.Log.Info("client kicked", "user", uid, "device", did)
	writeJSON(w, http.StatusOK, KickResult{Kicked: n})
}

func (h *Handler) stats(w http.ResponseWriter, _ *http.Request) {
	if h.ops(w) {
		writeJSON(w, http.StatusOK, h.Ops.Stats())
	}
}

func (h *Handler) cluster(w http.ResponseWriter, _ *http.Request) {
	clusterView(h, w, Clusterer.ClusterStatus)
}

func (h *Handler) clusterClients(w http.ResponseWriter, _ *http.Request) {
	clusterView(h, w, Clusterer.ClusterClients)
}

func (h *Handler) clusterStats(w http.ResponseWriter, _ *http.Request) {
	clusterView(h, w, Clusterer.ClusterStats)
}

// clusterView answers one of the cluster's views: 404 from a single
// node.
func clusterView[T any](h *Handler, w http.ResponseWriter, view func(Clusterer) (T, error)) {
	if !h.ops(w) {
		return
	}
	c, ok := h.Ops.(Clusterer)
	if !ok {
		writeErr(w, http.StatusNotFound, "not a cluster node")
		return
	}
	v, err := view(c)
	if errors.Is(err, ErrNotCluster) {
		writeErr(w, http.StatusNotFound, "not a cluster node")
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ErrNotCluster: the broker runs as a single node.
var ErrNotCluster = errors.New("adminapi: not a cluster node")

func (h *Handler) notice(w http.ResponseWriter, r *http.Request) {
	var req Notice
	if !decode(w, r, &req) || !h.ops(w) {
		return
	}
	if t := strings.TrimSpace(req.Text); t == "" || len(req.Text) > MaxNotice || !utf8.ValidString(req.Text) {
		writeErr(w, http.StatusBadRequest, ErrNoticeText.Error())
		return
	}
	n, err := h.Ops.Notice(req.Text)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.Log.Info("notice published", "bytes", len(n.Text))
	writeJSON(w, http.StatusOK, n)
}

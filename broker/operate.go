package broker

import (
	"encoding/json"
	"sort"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/buildinfo"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

var _ adminapi.Operator = (*Broker)(nil)

// Clients lists the authenticated connections, oldest first.
func (b *Broker) Clients() []adminapi.ClientInfo {
	var out []adminapi.ClientInfo
	b.sessions.Range(func(cl *mqtt.Client, s *session.Session) bool {
		out = append(out, adminapi.ClientInfo{
			Node: b.cfg.Cluster.Node, UID: s.UID, DID: s.DID, ClientID: cl.ID, Addr: s.Remote,
			Proto: proto(cl.Properties.ProtocolVersion), Listener: s.Listener, Since: s.Connected.UTC(),
		})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

func proto(v byte) string {
	switch v {
	case 3:
		return "mqtt/3.1"
	case 5:
		return "mqtt/5"
	}
	return "mqtt/3.1.1"
}

// Stats reports the broker's state for GET /admin/v1/stats.
func (b *Broker) Stats() adminapi.Stats {
	in := buildinfo.Read()
	info := b.mqtt.Info
	return adminapi.Stats{
		Node:    b.cfg.Cluster.Node,
		Version: in.Version, Commit: in.Commit, GoVersion: in.GoVersion,
		Started: b.started.UTC(), UptimeSeconds: int64(time.Since(b.started) / time.Second),
		Connections:   b.sessions.Len(),
		Subscriptions: atomic.LoadInt64(&info.Subscriptions),
		Retained:      atomic.LoadInt64(&info.Retained),
		BytesIn:       atomic.LoadInt64(&info.BytesReceived),
		BytesOut:      atomic.LoadInt64(&info.BytesSent),
		StoreBytes:    b.st.Size(),
	}
}

// Notice retains {text, ts} on im/sys/notice (PROTOCOL §16, operations):
// every device may subscribe to it.
func (b *Broker) Notice(text string) (adminapi.Notice, error) {
	n := adminapi.Notice{Text: text, TS: time.Now().UnixMilli()}
	p, err := json.Marshal(n)
	if err != nil {
		return n, err
	}
	return n, b.mqtt.Publish(topics.SysNotice, p, true, 1)
}

package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/compliance"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

func admin(b *brokertest.Broker) *adminapi.Client {
	return adminapi.NewClient(b.HTTPURL(), b.AdminToken())
}

// export runs an export through node b's admin API and verifies it.
func export(t *testing.T, b *brokertest.Broker, q url.Values) (string, compliance.Manifest) {
	t.Helper()
	var buf bytes.Buffer
	if err := admin(b).Export(context.Background(), q, &buf); err != nil {
		t.Fatalf("export %v: %v", q, err)
	}
	m, err := compliance.VerifyExport(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("export %v: %v\n%s", q, err, buf.String())
	}
	return buf.String(), m
}

// TestComplianceAcrossNodes: a hold placed through node 1 makes a
// delete made on node 2 keep the body, which an export through node 3
// returns; a delete without a hold purges; every node exports the same
// file (count and sha256); a retention set through one node reads the
// same through another; each node audits what went through it.
func TestComplianceAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	for _, u := range []string{"alice", "bob", "carol"} {
		nodes[0].AddUser(u, pw)
	}
	ctx := context.Background()
	h, err := admin(nodes[0]).AddHold(ctx, adminapi.HoldRequest{CV: "d:alice:bob", Reason: "case 1"})
	if err != nil {
		t.Fatal(err)
	}
	if hs, err := admin(nodes[2]).Holds(ctx); err != nil || len(hs) != 1 || hs[0].ID != h.ID {
		t.Fatalf("holds through node 3: %+v %v", hs, err)
	}
	a := on(t, nodes[1], "alice", "p1")
	b := on(t, nodes[2], "bob", "p1")
	c := on(t, nodes[2], "carol", "p1")
	a.text("bob", "m1", "held secret")
	a.text("carol", "m2", "free secret")
	toBob, toCarol := b.next(), c.next()
	for i, id := range []string{toBob.ID.String(), toCarol.ID.String()} {
		a.pub(topics.UpMsg, fmt.Appendf(nil, `{"op":"del","id":%q,"cmid":"d%d"}`, id, i))
	}
	if ev := b.next(); ev.T != im.TDel {
		t.Fatalf("bob got %+v, want the del", ev)
	}
	if ev := c.next(); ev.T != im.TDel {
		t.Fatalf("carol got %+v, want the del", ev)
	}
	// Users see tombstones on every node.
	for _, d := range []*dev{on(t, nodes[0], "bob", "p2"), on(t, nodes[1], "carol", "p2")} {
		evs := d.syncAll(0)
		if len(evs) != 2 || !evs[0].Deleted || evs[0].B != "" {
			t.Fatalf("%s sees %+v", d.uid, evs)
		}
	}
	held, m := export(t, nodes[2], url.Values{"cv": {"d:alice:bob"}})
	if m.Count != 2 || !strings.Contains(held, `"held secret"`) || !strings.Contains(held, `"deleted":true`) {
		t.Fatalf("export of the held DM through node 3 (%d events):\n%s", m.Count, held)
	}
	free, m := export(t, nodes[2], url.Values{"cv": {"d:alice:carol"}})
	if m.Count != 2 || strings.Contains(free, "free secret") {
		t.Fatalf("export of the purged DM (%d events):\n%s", m.Count, free)
	}
	var want compliance.Manifest
	for i, n := range nodes {
		_, got := export(t, n, url.Values{"user": {"alice"}})
		if i == 0 {
			want = got
			continue
		}
		if got != want || got.Count != 4 {
			t.Fatalf("export through node %d: %+v, through node 1: %+v", i+1, got, want)
		}
	}
	if _, err := admin(nodes[0]).SetRetention(ctx, "d:alice:carol", "30d"); err != nil {
		t.Fatal(err)
	}
	if r, err := admin(nodes[2]).Retention(ctx, "d:alice:carol"); err != nil || r.Seconds != 30*86400 {
		t.Fatalf("retention through node 3: %+v %v", r, err)
	}
	// Each node audits what went through it, in its own data dir.
	for i, typ := range map[int]string{0: `"hold.add"`, 1: `"msg.delete"`, 2: `"export"`} {
		if got := auditText(t, nodes[i]); !strings.Contains(got, typ) {
			t.Errorf("node %d's audit log has no %s line", i+1, typ)
		}
	}
}

// auditText is node b's audit log.
func auditText(t *testing.T, b *brokertest.Broker) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(b.AuditDir(), "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("audit files in %q: %v %v", b.AuditDir(), files, err)
	}
	var all strings.Builder
	for _, f := range files {
		p, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(p)
	}
	return all.String()
}

// trimmed collects what one node's retention removed.
type trimmed struct {
	node int
	ch   chan<- [2]string
}

func (f trimmed) Forget(evs []im.Forgotten) {
	for _, ev := range evs {
		f.ch <- [2]string{fmt.Sprint(f.node), ev.CV + " " + ev.ID.String()}
	}
}

// TestRetentionAcrossNodes: with im.retention set on a three-node
// cluster, expired events leave the store once, through one node, and
// never a held one; what expires later goes the same way.
func TestRetentionAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3, func(_ int, cfg *config.Config) {
		cfg.IM.Retention = 2 * time.Second
		cfg.IM.TrimEvery = 100 * time.Millisecond
	})
	ch := make(chan [2]string, 100)
	for i, n := range nodes {
		n.Forgetters().Add(trimmed{node: i, ch: ch})
		n.AddUser(fmt.Sprint("u", i), pw)
	}
	nodes[0].AddUser("alice", pw)
	ctx := context.Background()
	if _, err := admin(nodes[1]).AddHold(ctx, adminapi.HoldRequest{CV: "d:alice:u2"}); err != nil {
		t.Fatal(err)
	}
	a := on(t, nodes[0], "alice", "p1")
	for i := range 3 {
		a.text("u2", fmt.Sprint("h", i), "held")
		a.text("u1", fmt.Sprint("f", i), "free")
	}
	seen := map[string]string{}
	wait := func(n int) {
		t.Helper()
		for range n {
			select {
			case f := <-ch:
				if !strings.HasPrefix(f[1], "d:alice:u1 ") {
					t.Fatalf("node %s trimmed %s", f[0], f[1])
				}
				if by, ok := seen[f[1]]; ok {
					t.Fatalf("%s trimmed twice, by node %s and node %s", f[1], by, f[0])
				}
				seen[f[1]] = f[0]
			case <-time.After(time.Minute):
				t.Fatalf("waited a minute for retention; trimmed %v", seen)
			}
		}
	}
	wait(3)
	a.text("u1", "f3", "free later")
	wait(1) // passes ran after the first three went: none came again
	if len(seen) != 4 {
		t.Fatalf("trimmed %v", seen)
	}
	for i, n := range nodes {
		if page, _, err := n.IM().History(im.HistoryQuery{CV: "d:alice:u2", Window: im.Open, Max: 10}); err != nil || len(page) != 3 {
			t.Fatalf("held DM on node %d: %d events, %v", i+1, len(page), err)
		}
		if page, _, err := n.IM().History(im.HistoryQuery{CV: "d:alice:u1", Window: im.Open, Max: 10}); err != nil || len(page) != 0 {
			t.Fatalf("free DM on node %d: %d events, %v", i+1, len(page), err)
		}
	}
	if _, m := export(t, nodes[2], url.Values{"cv": {"d:alice:u2"}}); m.Count != 3 {
		t.Fatalf("export of the held DM: %d events", m.Count)
	}
}

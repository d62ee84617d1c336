package cluster_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/web"
)

// httpc is a tus and download client of one user against one node.
type httpc struct {
	t     testing.TB
	base  string
	token string
}

// httpClient waits out a leader election (4–9 s) and more.
var httpClient = &http.Client{Timeout: 60 * time.Second}

func (c *httpc) do(method, p string, hdr map[string]string, body []byte) (int, http.Header, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+p, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read: %v", method, p, err)
	}
	return resp.StatusCode, resp.Header, b
}

func (c *httpc) want(code int, method, p string, hdr map[string]string, body []byte) (http.Header, []byte) {
	c.t.Helper()
	got, h, b := c.do(method, p, hdr, body)
	if got != code {
		c.t.Fatalf("%s %s on %s: %d (%s), want %d", method, p, c.base, got, b, code)
	}
	return h, b
}

// create starts a tus upload and returns its fid.
func (c *httpc) create(size int) string {
	c.t.Helper()
	h, _ := c.want(201, "POST", web.FilesPath, map[string]string{"Upload-Length": strconv.Itoa(size)}, nil)
	return path.Base(h.Get("Location"))
}

func (c *httpc) patch(fid string, offset int, body []byte) {
	c.t.Helper()
	c.want(204, "PATCH", web.FilesPath+fid, map[string]string{
		"Upload-Offset": strconv.Itoa(offset), "Content-Type": "application/offset+octet-stream",
	}, body)
}

func (c *httpc) offset(fid string) int {
	c.t.Helper()
	h, _ := c.want(200, "HEAD", web.FilesPath+fid, nil, nil)
	n, err := strconv.Atoi(h.Get("Upload-Offset"))
	if err != nil {
		c.t.Fatalf("HEAD %s: Upload-Offset %q", fid, h.Get("Upload-Offset"))
	}
	return n
}

func (c *httpc) download(fid string) []byte {
	c.t.Helper()
	_, b := c.want(200, "GET", web.FilesPath+fid, nil, nil)
	return b
}

func webAt(t testing.TB, b *brokertest.Broker, token string) *httpc {
	return &httpc{t: t, base: b.HTTPURL(), token: token}
}

func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i*31+i>>9)
	}
	return b
}

// TestFilesAcrossNodes: a file uploaded with tus on node 1 downloads,
// byte for byte, on nodes 2 and 3 by a member of the conversation it
// was sent to and by its uploader; a non-member gets 404 on every node;
// an upload cut on node 1, which then stops, resumes on node 2 from the
// offset the cluster stored, and downloads on node 3; the quota counts
// the uploads of every node.
func TestFilesAcrossNodes(t *testing.T) {
	const quota = 2 << 20
	nodes := brokertest.StartCluster(t, 3, func(_ int, cfg *config.Config) { cfg.Files.Quota = quota })
	for _, u := range []string{"alice", "bob", "carol"} {
		nodes[0].AddUser(u, pw)
	}
	token := map[string]string{}
	for i, u := range []string{"alice", "bob", "carol"} {
		token[u] = nodes[i].WebToken(t, u, pw) // any node issues a token for all
	}
	at := func(i int, uid string) *httpc { return webAt(t, nodes[i], token[uid]) }

	// Several pieces of the upload stream, and a part not on a boundary.
	a := content(600<<10+123, 7)
	fid := at(0, "alice").create(len(a))
	at(0, "alice").patch(fid, 0, a[:300<<10])
	at(0, "alice").patch(fid, 300<<10, a[300<<10:])

	// Sent to bob (device on node 2): the attachment makes him a reader.
	alice := on(t, nodes[1], "alice", "d1")
	bob := on(t, nodes[2], "bob", "d1")
	alice.pub("msg", fmt.Appendf(nil, `{"to":"bob","cmid":"f1","b":"photo","att":[{"fid":%q}]}`, fid))
	if ev := bob.next(); len(ev.Att) != 1 || ev.Att[0].FID != fid || ev.Att[0].Z != int64(len(a)) {
		t.Fatalf("bob got %+v, want the attachment %s of %d bytes", ev, fid, len(a))
	}
	for i := range nodes {
		for _, uid := range []string{"alice", "bob"} {
			if got := at(i, uid).download(fid); !bytes.Equal(got, a) {
				t.Fatalf("%s on node %d: %d bytes, not the upload (%d)", uid, i+1, len(got), len(a))
			}
		}
		at(i, "carol").want(404, "GET", web.FilesPath+fid, nil, nil)
		at(i, "carol").want(404, "HEAD", web.FilesPath+fid, nil, nil)
	}
	// A range, from a node's copy of the blob.
	_, tail := at(1, "bob").want(206, "GET", web.FilesPath+fid, map[string]string{"Range": "bytes=-100"}, nil)
	if !bytes.Equal(tail, a[len(a)-100:]) {
		t.Fatalf("range: %d bytes, not the tail", len(tail))
	}

	// An upload cut on node 1; node 1 stops; the client resumes on node 2.
	b := content(500<<10, 9)
	fid2 := at(0, "alice").create(len(b))
	at(0, "alice").patch(fid2, 0, b[:256<<10+17])
	if err := nodes[0].Close(); err != nil {
		t.Fatalf("stop node 1: %v", err)
	}
	off := at(1, "alice").offset(fid2)
	if off != 256<<10+17 {
		t.Fatalf("offset on node 2 after node 1 stopped = %d, want %d", off, 256<<10+17)
	}
	at(1, "alice").patch(fid2, off, b[off:])
	if got := at(2, "alice").download(fid2); !bytes.Equal(got, b) {
		t.Fatalf("resumed upload on node 3: %d bytes, not the upload", len(got))
	}
	for i := 1; i < 3; i++ {
		at(i, "bob").want(404, "GET", web.FilesPath+fid2, nil, nil) // not sent to anyone
	}
	// 1.1 MiB stored through nodes 1 and 2: 1 MiB more is over the quota.
	at(2, "alice").want(413, "POST", web.FilesPath, map[string]string{"Upload-Length": strconv.Itoa(1 << 20)}, nil)
	at(2, "alice").create(quota - len(a) - len(b))
}

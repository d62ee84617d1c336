package cluster_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/web"
	"github.com/tern-im/tern/topics"
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
		at(i, "carol").want(404, "GET", web.FilesPath+strings.Repeat("Z.*>", 300), nil, nil) // junk fid
	}
	// A compliance export through node 3 carries the file (files are
	// the cluster's, not the node's).
	var tarball bytes.Buffer
	if err := admin(nodes[2]).ExportFiles(context.Background(), url.Values{"user": {"bob"}}, &tarball); err != nil {
		t.Fatalf("export files: %v", err)
	}
	tr := tar.NewReader(&tarball)
	exported := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("export tar: %v", err)
		}
		if h.Name == "files/"+fid {
			got, err := io.ReadAll(tr)
			if err != nil || !bytes.Equal(got, a) {
				t.Fatalf("exported file: %d bytes, %v; not the upload", len(got), err)
			}
			exported = true
		}
	}
	if !exported {
		t.Fatalf("the export through node 3 lacks files/%s", fid)
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

// until polls cond every 20 ms until it holds, failing after
// brokertest.Timeout: the collector runs on its own timer.
func until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(brokertest.Timeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// TestFilesCollectedOnce: an expired, unattached file is collected by
// exactly one node (the one holding the collector's turn), its object
// and quota with it; when that node stops, another takes the turn and
// collects the next one.
func TestFilesCollectedOnce(t *testing.T) {
	const quota = 300 << 10
	nodes := brokertest.StartCluster(t, 3, func(_ int, cfg *config.Config) {
		cfg.Files.Quota = quota
		// Long enough for an upload to finish (it would be collected
		// unfinished), short enough for the test.
		cfg.Files.UploadExpiry = 4 * time.Second
		cfg.Files.Sweep = 400 * time.Millisecond
	})
	nodes[0].AddUser("alice", pw)
	token := nodes[0].WebToken(t, "alice", pw)
	collected := func(live []int) (total int64, by int) {
		by = -1
		for _, i := range live {
			if n := nodes[i].Files().Stats().Collected; n > 0 {
				total += n
				by = i
			}
		}
		return total, by
	}
	upload := func(i int) string {
		c := webAt(t, nodes[i], token)
		fid := c.create(quota) // the whole quota: nothing else fits until it goes
		c.patch(fid, 0, content(quota, byte(i)))
		c.want(413, "POST", web.FilesPath, map[string]string{"Upload-Length": "1"}, nil)
		return fid
	}

	fid := upload(0)
	until(t, "one node collected the first file", func() bool { n, _ := collected([]int{0, 1, 2}); return n > 0 })
	n, holder := collected([]int{0, 1, 2})
	if n != 1 {
		t.Fatalf("collected %d times, want once", n)
	}
	for i := range nodes {
		webAt(t, nodes[i], token).want(404, "GET", web.FilesPath+fid, nil, nil)
	}

	if err := nodes[holder].Close(); err != nil {
		t.Fatalf("stop node %d: %v", holder+1, err)
	}
	var live []int
	for i := range nodes {
		if i != holder {
			live = append(live, i)
		}
	}
	fid = upload(live[0]) // fits again: the quota came back
	until(t, "another node collected the second file", func() bool { n, _ := collected(live); return n > 0 })
	if n, _ := collected(live); n != 1 {
		t.Fatalf("collected %d times after node %d stopped, want once", n, holder+1)
	}
	for _, i := range live {
		webAt(t, nodes[i], token).want(404, "GET", web.FilesPath+fid, nil, nil)
	}
	webAt(t, nodes[live[1]], token).create(quota)
}

// TestMQTTUploadResumesOnAnotherNode: a device uploads part of a file in
// chunks over MQTT on node 1; another device of the same user, on node
// 2, declares the same hash and gets the same fid with the chunks stored
// so far, sends the rest (and one again) and commits; node 3 serves the
// file.
func TestMQTTUploadResumesOnAnotherNode(t *testing.T) {
	nodes := brokertest.StartCluster(t, 3)
	nodes[0].AddUser("alice", pw)
	body := content(300_000, 3)
	sum := sha256.Sum256(body)
	put := map[string]any{"n": "meter.bin", "z": len(body), "h": hex.EncodeToString(sum[:])}
	chunk := func(d *dev, fid string, size, i int) {
		t.Helper()
		end := min((i+1)*size, len(body))
		d.pub(fmt.Sprintf("%s/%s/%d", topics.UpFile, fid, i), body[i*size:end])
	}

	d1 := on(t, nodes[0], "alice", "d1")
	var r1 codec.FilePutResult
	d1.ok("file.put", put, &r1)
	count := (len(body) + r1.Chunk - 1) / r1.Chunk
	if count < 3 || len(r1.Have) != 0 {
		t.Fatalf("file.put = %+v: want a new upload of at least 3 chunks", r1)
	}
	chunk(d1, r1.FID, r1.Chunk, 0)
	chunk(d1, r1.FID, r1.Chunk, 2)

	d2 := on(t, nodes[1], "alice", "d2")
	var r2 codec.FilePutResult
	d2.ok("file.put", put, &r2)
	want := [][2]int{{0, 0}, {2, 2}}
	if r2.FID != r1.FID || r2.Chunk != r1.Chunk || !slices.Equal(r2.Have, want) {
		t.Fatalf("file.put on node 2 = %+v, want fid %s with have %v", r2, r1.FID, want)
	}
	for i := 1; i < count; i++ {
		chunk(d2, r2.FID, r2.Chunk, i) // chunk 2 again: stored once
	}
	var info codec.FileInfo
	d2.ok("file.commit", map[string]any{"fid": r2.FID}, &info)
	if info.Z != int64(len(body)) {
		t.Fatalf("file.commit = %+v", info)
	}
	c := webAt(t, nodes[2], nodes[2].WebToken(t, "alice", pw))
	if got := c.download(r1.FID); !bytes.Equal(got, body) {
		t.Fatalf("download on node 3: %d bytes, not the upload", len(got))
	}
}

// TestKill9MidUpload: a device uploads chunks over MQTT to node 1, a
// real process, which is killed with SIGKILL mid-upload. On node 2 the
// same device's file.put lists every chunk node 1 acknowledged; it sends
// the rest and commits, and the file downloads intact.
func TestKill9MidUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster node process")
	}
	t.Parallel()
	cmd, url1, nodes := procCluster(t)
	nodes[0].AddUser("alice", pw)
	body := content(2<<20, 5)
	sum := sha256.Sum256(body)
	put := map[string]any{"n": "big.bin", "z": len(body), "h": hex.EncodeToString(sum[:])}

	d1 := dial(t, url1, "alice", "d1")
	var r codec.FilePutResult
	d1.ok("file.put", put, &r)
	count := (len(body) + r.Chunk - 1) / r.Chunk
	chunkOf := func(i int) []byte { return body[i*r.Chunk : min((i+1)*r.Chunk, len(body))] }
	var acked []int
	for i := 0; i < count; i++ {
		if i == count/2 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		tok := d1.c.Publish(topics.Up("alice", "d1", fmt.Sprintf("%s/%s/%d", topics.UpFile, r.FID, i)), 1, false, chunkOf(i))
		if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
			break // node 1 is gone: this chunk was not acknowledged
		}
		acked = append(acked, i)
	}
	if len(acked) < count/2 || len(acked) == count {
		t.Fatalf("%d of %d chunks acknowledged around the kill at %d", len(acked), count, count/2)
	}

	d2 := on(t, nodes[0], "alice", "d1") // the same device, on node 2
	var r2 codec.FilePutResult
	d2.ok("file.put", put, &r2)
	have := map[int]bool{}
	for _, rg := range r2.Have {
		for i := rg[0]; i <= rg[1]; i++ {
			have[i] = true
		}
	}
	if r2.FID != r.FID {
		t.Fatalf("file.put on node 2: fid %s, want %s", r2.FID, r.FID)
	}
	for _, i := range acked {
		if !have[i] {
			t.Fatalf("chunk %d was acknowledged by node 1 but is not stored (have %v)", i, r2.Have)
		}
	}
	for i := 0; i < count; i++ {
		if !have[i] {
			d2.pub(fmt.Sprintf("%s/%s/%d", topics.UpFile, r.FID, i), chunkOf(i))
		}
	}
	var info codec.FileInfo
	d2.ok("file.commit", map[string]any{"fid": r.FID}, &info)
	c := webAt(t, nodes[1], nodes[1].WebToken(t, "alice", pw))
	if got := c.download(r.FID); !bytes.Equal(got, body) {
		t.Fatalf("download after the kill: %d bytes, not the upload", len(got))
	}
	t.Logf("killed after %d of %d chunks acknowledged; node 2 had %d stored", len(acked), count, len(have))
}

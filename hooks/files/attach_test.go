package files_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// send publishes a msg command and waits for its PUBACK.
func (d *dev) send(m map[string]any) {
	d.t.Helper()
	p, err := json.Marshal(m)
	if err != nil {
		d.t.Fatal(err)
	}
	brokertest.Wait(d.t, d.c.Publish(topics.Up(d.uid, d.did, topics.UpMsg), 1, false, p), "send")
}

// event waits for the next event on …/in of type t.
func (d *dev) event(t string) codec.Event {
	d.t.Helper()
	for {
		select {
		case b := <-d.in:
			var ev codec.Event
			if err := codec.Decode(b, &ev); err != nil {
				d.t.Fatal(err)
			}
			if ev.T == t {
				return ev
			}
		case <-time.After(brokertest.Timeout):
			d.t.Fatalf("%s.%s: no %s event", d.uid, d.did, t)
		}
	}
}

// uploadMQTT uploads content over MQTT and returns the committed file.
func (d *dev) uploadMQTT(name string, content []byte) codec.FileInfo {
	d.t.Helper()
	var put codec.FilePutResult
	d.ok("file.put", map[string]any{"n": name, "z": len(content), "h": hash(content)}, &put)
	for i, c := range split(content, put.Chunk) {
		d.chunk(put.FID, i, c)
	}
	var info codec.FileInfo
	d.ok("file.commit", map[string]any{"fid": put.FID}, &info)
	return info
}

// httpGet downloads a file over HTTP with a token from /v1/login.
func httpGet(t *testing.T, b *brokertest.Broker, uid, fid, rng string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", b.HTTPURL()+"/v1/files/"+fid, nil)
	req.Header.Set("Authorization", "Bearer "+b.WebToken(t, uid, pw))
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, got
}

// TestAttachAndRead: a send with att:[{fid}] is checked and filled in by
// the server; members of the conversation read the file over MQTT and
// HTTP (Range), inside their membership window only; anyone else gets 404;
// the file is removed with the last message that attaches it.
func TestAttachAndRead(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		b.AddUser(u, pw)
	}
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	bob := connect(t, b, b.ClientOptions("bob.p1", "bob", pw), "bob", "p1")
	carol := connect(t, b, b.ClientOptions("carol.p1", "carol", pw), "carol", "p1")
	content := random(30_000, 5)
	info := alice.uploadMQTT("meter.bin", content)

	// Refusals: a file not committed (400), someone else's (403), no fid (400).
	var half codec.FilePutResult
	alice.ok("file.put", map[string]any{"z": 10, "h": hash([]byte("0123456789"))}, &half)
	alice.send(map[string]any{"to": "bob", "cmid": "c0", "att": []map[string]any{{"fid": half.FID}}})
	if e := alice.nextErr(); e.Code != 400 {
		t.Fatalf("attach an upload in progress: %+v", e)
	}
	carol.send(map[string]any{"to": "bob", "cmid": "c0", "att": []map[string]any{{"fid": info.FID}}})
	if e := carol.nextErr(); e.Code != 403 {
		t.Fatalf("attach someone else's file: %+v", e)
	}

	// The DM: the server fills in the attachment.
	alice.send(map[string]any{"to": "bob", "cmid": "c1", "b": "the meter", "att": []map[string]any{{"fid": info.FID, "n": "lies.exe", "z": 1}}})
	ev := bob.event("msg")
	if len(ev.Att) != 1 {
		t.Fatalf("event without the attachment: %+v", ev)
	}
	if a := ev.Att[0]; a.FID != info.FID || a.N != "meter.bin" || a.Z != int64(len(content)) ||
		a.CT != "application/octet-stream" || hex.EncodeToString(a.H) != hash(content) {
		t.Fatalf("attachment = %+v", a)
	}
	dm := ev.ID

	// Bob, a member, reads it over MQTT and HTTP; carol does not.
	if got, _ := bob.download(info.FID); !bytes.Equal(got, content) {
		t.Fatal("bob's MQTT download differs")
	}
	if code, got := httpGet(t, b, "bob", info.FID, "bytes=1000-1999"); code != 206 || !bytes.Equal(got, content[1000:2000]) {
		t.Fatalf("bob's HTTP range: %d, %d bytes", code, len(got))
	}
	carol.fail("file.get", map[string]any{"fid": info.FID}, 404)
	if code, _ := httpGet(t, b, "carol", info.FID, ""); code != 404 {
		t.Fatalf("carol's HTTP download: %d", code)
	}

	// A group: dave joins after the message, outside his window.
	var g struct{ GID string }
	alice.ok("group.create", map[string]any{"name": "ops", "members": []string{"bob"}}, &g)
	alice.send(map[string]any{"to": "g:" + g.GID, "cmid": "c2", "b": "again", "att": []map[string]any{{"fid": info.FID}}})
	grp := bob.event("msg")
	for grp.CV != "g:"+g.GID {
		grp = bob.event("msg")
	}
	alice.ok("group.add", map[string]any{"gid": g.GID, "uids": []string{"dave"}}, nil)
	dave := connect(t, b, b.ClientOptions("dave.p1", "dave", pw), "dave", "p1")
	dave.fail("file.stat", map[string]any{"fid": info.FID}, 404)
	if code, _ := httpGet(t, b, "dave", info.FID, ""); code != 404 {
		t.Fatalf("dave's HTTP download: %d", code)
	}

	// Deleting the DM leaves the group's reference; deleting that one too
	// removes the file and its content.
	blob := b.Files().BlobPath(hash(content))
	alice.send(map[string]any{"op": "del", "id": dm.String(), "cmid": "d1"})
	bob.ok("file.stat", map[string]any{"fid": info.FID}, nil)
	alice.send(map[string]any{"op": "del", "id": grp.ID.String(), "cmid": "d2"})
	alice.fail("file.stat", map[string]any{"fid": info.FID}, 404)
	bob.fail("file.get", map[string]any{"fid": info.FID}, 404)
	if _, err := os.Stat(blob); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("content kept after the last message went: %v", err)
	}
}

// TestTrimmedMessageReleasesFile: a message trimmed by retention no longer
// keeps the file it attached; with no other reference the file goes.
func TestTrimmedMessageReleasesFile(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	content := random(5000, 6)
	info := alice.uploadMQTT("a.bin", content)
	alice.send(map[string]any{"to": "bob", "cmid": "c1", "b": "x", "att": []map[string]any{{"fid": info.FID}}})
	alice.event("msg")
	alice.ok("file.stat", map[string]any{"fid": info.FID}, nil)
	st, err := b.Store().Trim(time.Now().Add(time.Hour)) // everything is older than that
	if err != nil || st.Events == 0 {
		t.Fatalf("trim: %+v, %v", st, err)
	}
	alice.fail("file.stat", map[string]any{"fid": info.FID}, 404)
	if _, err := os.Stat(b.Files().BlobPath(hash(content))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("content kept after its message was trimmed: %v", err)
	}
}

// TestDisappearingMessageReleasesFile: a message with a ttl expires in the
// store without an event; the collector finds its reference dead and the
// file goes with it.
func TestDisappearingMessageReleasesFile(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	info := alice.uploadMQTT("a.bin", random(3000, 7))
	alice.send(map[string]any{"to": "bob", "cmid": "c1", "b": "x", "ttl": 1, "att": []map[string]any{{"fid": info.FID}}})
	ev := alice.event("msg")
	if n, err := b.Files().Collect(time.Now()); err != nil || n != 0 {
		t.Fatalf("collect while the message lives = %d, %v", n, err)
	}
	// Badger expires the message after its second (1 s resolution): wait
	// for that, bounded, then collect.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(brokertest.Timeout)
	for {
		if r := alice.call("msg.get", map[string]any{"id": ev.ID.String()}); !r.OK {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the message did not expire")
		}
	}
	if n, err := b.Files().Collect(time.Now()); err != nil || n != 1 {
		t.Fatalf("collect after the message expired = %d, %v", n, err)
	}
	alice.fail("file.stat", map[string]any{"fid": info.FID}, 404)
}

// TestGroupAvatar: a group's avatar is a file the group keeps (it does
// not expire unattached), its members may read it, and it goes when the
// avatar is replaced.
func TestGroupAvatar(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		b.AddUser(u, pw)
	}
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	bob := connect(t, b, b.ClientOptions("bob.p1", "bob", pw), "bob", "p1")
	carol := connect(t, b, b.ClientOptions("carol.p1", "carol", pw), "carol", "p1")
	var g struct{ GID string }
	alice.ok("group.create", map[string]any{"name": "ops", "members": []string{"bob"}}, &g)
	first := alice.uploadMQTT("a.png", random(2000, 10))
	bobs := bob.uploadMQTT("b.png", random(2000, 11))
	alice.fail("group.update", map[string]any{"gid": g.GID, "avatar": bobs.FID}, 403)
	alice.ok("group.update", map[string]any{"gid": g.GID, "avatar": first.FID}, nil)
	bob.ok("file.stat", map[string]any{"fid": first.FID}, nil)
	carol.fail("file.stat", map[string]any{"fid": first.FID}, 404)
	// Not attached to any message, yet kept: the group references it.
	if _, err := b.Files().Collect(time.Now().Add(25 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	bob.ok("file.stat", map[string]any{"fid": first.FID}, nil)
	second := alice.uploadMQTT("c.png", random(2000, 12))
	alice.ok("group.update", map[string]any{"gid": g.GID, "avatar": second.FID}, nil)
	alice.fail("file.stat", map[string]any{"fid": first.FID}, 404)
	bob.ok("file.stat", map[string]any{"fid": second.FID}, nil)
}

package files_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/topics"
)

const pw = "password-1"

// dev is a 3.1.1 device subscribed to its own downstream tree.
type dev struct {
	t        testing.TB
	c        paho.Client
	uid, did string
	rpc      chan []byte
	in       chan []byte
	rid      atomic.Int64

	mu     sync.Mutex
	chunks map[int][]byte // download chunks by index
	got    chan struct{}
}

func connect(t testing.TB, b *brokertest.Broker, o *paho.ClientOptions, uid, did string) *dev {
	t.Helper()
	d := &dev{t: t, uid: uid, did: did, rpc: make(chan []byte, 1000), in: make(chan []byte, 1000),
		chunks: map[int][]byte{}, got: make(chan struct{}, 10000)}
	d.c = b.Connect(o)
	brokertest.Subscribe(t, d.c, topics.DeviceFilter(uid, did), 1, func(_ paho.Client, m paho.Message) {
		switch {
		case strings.HasSuffix(m.Topic(), "/rpc"):
			select {
			case d.rpc <- m.Payload():
			default:
			}
		case strings.HasSuffix(m.Topic(), "/in"):
			select {
			case d.in <- m.Payload():
			default:
			}
		case strings.Contains(m.Topic(), "/f/"):
			i, err := strconv.Atoi(m.Topic()[strings.LastIndexByte(m.Topic(), '/')+1:])
			if err != nil {
				return
			}
			d.mu.Lock()
			d.chunks[i] = bytes.Clone(m.Payload())
			d.mu.Unlock()
			select {
			case d.got <- struct{}{}:
			default:
			}
		}
	})
	return d
}

type reply struct {
	RID  string          `json:"rid"`
	OK   bool            `json:"ok"`
	R    json.RawMessage `json:"r"`
	Err  *codec.ReplyErr `json:"err"`
	T    string          `json:"t"`
	Code int             `json:"code"`
	Msg  string          `json:"msg"`
}

func (d *dev) wait(what string) []byte {
	d.t.Helper()
	select {
	case b := <-d.rpc:
		return b
	case <-time.After(brokertest.Timeout):
		d.t.Fatalf("%s.%s: timed out waiting for %s", d.uid, d.did, what)
		return nil
	}
}

func (d *dev) call(op string, args any) reply {
	d.t.Helper()
	rid := fmt.Sprintf("r%d", d.rid.Add(1))
	p, err := json.Marshal(map[string]any{"rid": rid, "op": op, "a": args})
	if err != nil {
		d.t.Fatal(err)
	}
	brokertest.Wait(d.t, d.c.Publish(topics.Up(d.uid, d.did, topics.UpRPC), 1, false, p), "publish "+op)
	for {
		var r reply
		if err := json.Unmarshal(d.wait("reply to "+op), &r); err != nil {
			d.t.Fatal(err)
		}
		if r.RID == rid {
			return r
		}
	}
}

func (d *dev) ok(op string, args, out any) {
	d.t.Helper()
	r := d.call(op, args)
	if !r.OK {
		d.t.Fatalf("%s %v: %+v", op, args, r.Err)
	}
	if out != nil {
		if err := json.Unmarshal(r.R, out); err != nil {
			d.t.Fatal(err)
		}
	}
}

func (d *dev) fail(op string, args any, code int) reply {
	d.t.Helper()
	r := d.call(op, args)
	if r.OK || r.Err == nil || r.Err.Code != code {
		d.t.Fatalf("%s %v: want error %d, got ok=%v err=%+v", op, args, code, r.OK, r.Err)
	}
	return r
}

// chunk publishes chunk i of fid and waits for its PUBACK.
func (d *dev) chunk(fid string, i int, data []byte) {
	d.t.Helper()
	topic := topics.Up(d.uid, d.did, topics.UpFile) + "/" + fid + "/" + strconv.Itoa(i)
	brokertest.Wait(d.t, d.c.Publish(topic, 1, false, data), "chunk "+strconv.Itoa(i))
}

// nextErr returns the next err event on the rpc topic.
func (d *dev) nextErr() reply {
	d.t.Helper()
	var r reply
	if err := json.Unmarshal(d.wait("err event"), &r); err != nil {
		d.t.Fatal(err)
	}
	if r.T != "err" {
		d.t.Fatalf("want an err event, got %+v", r)
	}
	return r
}

// waitChunk waits for the next download chunk.
func (d *dev) waitChunk() {
	d.t.Helper()
	select {
	case <-d.got:
	case <-time.After(brokertest.Timeout):
		d.t.Fatalf("%s.%s: no download chunk", d.uid, d.did)
	}
}

// download asks for every chunk of fid with file.get, window by window,
// and returns the content.
func (d *dev) download(fid string) ([]byte, codec.FileGetResult) {
	d.t.Helper()
	d.mu.Lock()
	clear(d.chunks)
	d.mu.Unlock()
	var res codec.FileGetResult
	for from := 0; ; {
		d.ok("file.get", map[string]any{"fid": fid, "from": from}, &res)
		for {
			d.mu.Lock()
			n := len(d.chunks)
			d.mu.Unlock()
			if n >= from+res.Cnt {
				break
			}
			select {
			case <-d.got:
			case <-time.After(brokertest.Timeout):
				d.t.Fatalf("download %s: %d of %d chunks", fid, n, from+res.Cnt)
			}
		}
		from += res.Cnt
		if from >= res.Count {
			break
		}
	}
	var out []byte
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; i < res.Count; i++ {
		out = append(out, d.chunks[i]...)
	}
	return out, res
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func split(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(size, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// TestUploadCutAndResumed uploads over a link that is cut halfway: the
// device reconnects, file.put tells it what is stored, it resends only
// the missing chunks, commits, and downloads the file over MQTT.
func TestUploadCutAndResumed(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	proxy := b.Proxy()
	alice := connect(t, b, b.ClientOptionsAt(proxy.URL(), "alice.p1", "alice", pw), "alice", "p1")
	alice.ok("hello", map[string]any{"maxPkt": 1024}, nil)

	content := random(20_000, 1)
	var put codec.FilePutResult
	alice.ok("file.put", map[string]any{"n": "meter.bin", "z": len(content), "h": hash(content)}, &put)
	if put.Chunk != 768 || len(put.Have) != 0 {
		t.Fatalf("file.put = %+v, want chunk 768 (maxPkt 1024 less overhead) and nothing stored", put)
	}
	parts := split(content, put.Chunk)
	half := len(parts) / 2
	for i := 0; i < half; i++ {
		alice.chunk(put.FID, i, parts[i])
	}
	alice.fail("file.commit", map[string]any{"fid": put.FID}, 409)
	proxy.Cut()

	// Reconnected (directly); the same put resumes the same upload.
	alice2 := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	alice2.ok("hello", map[string]any{"maxPkt": 1024}, nil)
	var again codec.FilePutResult
	alice2.ok("file.put", map[string]any{"n": "meter.bin", "z": len(content), "h": hash(content)}, &again)
	if again.FID != put.FID || len(again.Have) != 1 || again.Have[0] != [2]int{0, half - 1} {
		t.Fatalf("resumed file.put = %+v, want fid %s and have [[0,%d]]", again, put.FID, half-1)
	}
	resent := 0
	for i := again.Have[0][1] + 1; i < len(parts); i++ {
		alice2.chunk(put.FID, i, parts[i])
		resent++
	}
	if resent != len(parts)-half {
		t.Fatalf("resent %d chunks, want %d", resent, len(parts)-half)
	}
	var info codec.FileInfo
	alice2.ok("file.commit", map[string]any{"fid": put.FID}, &info)
	if info.Z != int64(len(content)) || hex.EncodeToString(info.H) != hash(content) || info.CT != "application/octet-stream" || info.N != "meter.bin" {
		t.Fatalf("file.commit = %+v", info)
	}

	// Download over MQTT, in the device's chunk size.
	got, res := alice2.download(put.FID)
	if !bytes.Equal(got, content) || res.Chunk != 768 || res.Count != len(parts) {
		t.Fatalf("downloaded %d bytes (%+v), want the %d uploaded", len(got), res, len(content))
	}
	var st codec.FileInfo
	alice2.ok("file.stat", map[string]any{"fid": put.FID}, &st)
	if st.Committed == nil || !*st.Committed || len(st.Have) != 1 {
		t.Fatalf("file.stat = %+v", st)
	}

	// Someone else's file does not exist for bob, whatever he tries.
	bob := connect(t, b, b.ClientOptions("bob.p1", "bob", pw), "bob", "p1")
	for _, op := range []string{"file.get", "file.stat", "file.commit"} {
		bob.fail(op, map[string]any{"fid": put.FID}, 404)
	}
	bob.chunk(put.FID, 0, parts[0]) // 3.1.1: acknowledged, refused by an err event
	if e := bob.nextErr(); e.Code != 404 {
		t.Fatalf("bob's chunk: %+v", e)
	}
	alice2.fail("file.get", map[string]any{"fid": "01J9Z3K8Q4W6X2M7N5P0R8T1VB"}, 404)
}

// TestBadChunks checks each bad chunk's err event and MQTT 5 reason code.
func TestBadChunks(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	alice := connect(t, b, b.ClientOptions("alice.p2", "alice", pw), "alice", "p2")
	content := random(1000, 2)
	var put codec.FilePutResult
	alice.ok("file.put", map[string]any{"z": len(content), "h": hash(content)}, &put)

	c5, _, err := b.Dial5("alice", "p1", pw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		fid    string
		i      int
		data   []byte
		reason byte
	}{
		{"wrong size", put.FID, 0, content[:10], 0x99},
		{"past the end", put.FID, 1, content[:10], 0x99},
		{"unknown fid", "01J9Z3K8Q4W6X2M7N5P0R8T1VB", 0, content, 0x83},
		{"stored", put.FID, 0, content, 0x00},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
		resp, err := c5.Publish(ctx, &paho5.Publish{
			Topic: topics.Up("alice", "p1", topics.UpFile) + "/" + tc.fid + "/" + strconv.Itoa(tc.i),
			QoS:   1, Payload: tc.data,
		})
		cancel()
		if tc.reason != 0 {
			if err == nil || resp == nil || resp.ReasonCode != tc.reason {
				t.Fatalf("%s: PUBACK %+v, %v; want reason %#x", tc.name, resp, err, tc.reason)
			}
		} else if err != nil || resp.ReasonCode != 0 {
			t.Fatalf("%s: %+v, %v", tc.name, resp, err)
		}
	}
	var info codec.FileInfo
	alice.ok("file.commit", map[string]any{"fid": put.FID}, &info)
	if info.Z != 1000 {
		t.Fatalf("commit = %+v", info)
	}
}

// TestQuota refuses an upload beyond the user's quota, and one beyond
// the largest file, with 413.
func TestQuota(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.Files.Quota = 10_000
		c.Files.MaxSize = 8_000
	})
	b.AddUser("alice", pw)
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	alice.fail("file.put", map[string]any{"z": 8001, "h": hash([]byte("a"))}, 413)
	alice.ok("file.put", map[string]any{"z": 6000, "h": hash([]byte("b"))}, nil)
	alice.fail("file.put", map[string]any{"z": 6000, "h": hash([]byte("c"))}, 413)
	alice.fail("file.put", map[string]any{"z": 10, "h": "nothex"}, 400)
}

// TestExpiredUploadCollected: an upload left half done is removed by the
// collector once expired, and its quota given back.
func TestExpiredUploadCollected(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.Files.Quota = 1500 })
	b.AddUser("alice", pw)
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	content := random(1000, 3)
	var put codec.FilePutResult
	alice.ok("file.put", map[string]any{"z": len(content), "h": hash(content)}, &put)
	alice.fail("file.put", map[string]any{"z": 1000, "h": hash([]byte("other"))}, 413)
	if n, err := b.Files().Collect(time.Now().Add(23 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("collect before expiry = %d, %v", n, err)
	}
	if n, err := b.Files().Collect(time.Now().Add(25 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("collect after expiry = %d, %v", n, err)
	}
	alice.fail("file.stat", map[string]any{"fid": put.FID}, 404)
	var again codec.FilePutResult
	alice.ok("file.put", map[string]any{"z": len(content), "h": hash(content)}, &again)
	if again.FID == put.FID {
		t.Fatal("a collected upload was resumed")
	}
}

// TestUploadRate: chunks beyond the device's upload rate are refused with
// 429 and not stored; the device sends them again later.
func TestUploadRate(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.Limits.MaxPacketSize = 4 << 10
		c.IM.MaxBody = 1 << 10
		c.Files.UploadRate = 1 // a byte per second: the burst is all there is
		c.Files.UploadBurst = 4 << 10
	})
	b.AddUser("alice", pw)
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	content := random(10_000, 4)
	var put codec.FilePutResult
	alice.ok("file.put", map[string]any{"z": len(content), "h": hash(content)}, &put)
	parts := split(content, put.Chunk)
	alice.chunk(put.FID, 0, parts[0])
	alice.chunk(put.FID, 1, parts[1])
	if e := alice.nextErr(); e.Code != 429 {
		t.Fatalf("second chunk: %+v, want 429", e)
	}
	var st codec.FileInfo
	alice.ok("file.stat", map[string]any{"fid": put.FID}, &st)
	if len(st.Have) != 1 || st.Have[0] != [2]int{0, 0} {
		t.Fatalf("have = %v, want only chunk 0", st.Have)
	}
}

// TestGetWindowFitsInflight: one file.get never sends more chunk bytes
// than half of what the broker holds in flight per client; a window of
// limits.max_inflight_bytes would have its oldest chunks dropped before a
// slow device acknowledged them, and the device would ask for them again
// forever.
func TestGetWindowFitsInflight(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	content := random(2<<20, 8)
	var put codec.FilePutResult
	alice.ok("file.put", map[string]any{"z": len(content), "h": hash(content)}, &put)
	for i, c := range split(content, put.Chunk) {
		alice.chunk(put.FID, i, c)
	}
	alice.ok("file.commit", map[string]any{"fid": put.FID}, nil)
	var res codec.FileGetResult
	alice.ok("file.get", map[string]any{"fid": put.FID}, &res)
	if limit := int(b.Config.Limits.MaxInflightBytes) / 2; res.Cnt*res.Chunk > limit || res.Cnt < 1 {
		t.Fatalf("file.get sends %d chunks of %d bytes, more than %d", res.Cnt, res.Chunk, limit)
	}
	got, _ := alice.download(put.FID)
	if !bytes.Equal(got, content) {
		t.Fatal("download differs")
	}
}

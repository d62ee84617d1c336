package files_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// cborReply is an RPC reply in CBOR with its result kept raw.
type cborReply struct {
	RID string          `cbor:"rid"`
	OK  bool            `cbor:"ok"`
	R   cbor.RawMessage `cbor:"r"`
	Err *codec.ReplyErr `cbor:"err"`
}

// cborCall makes an RPC in CBOR (after hello enc:cbor) and returns the reply.
func (d *dev) cborCall(rid, op string, args any) cborReply {
	d.t.Helper()
	p, err := codec.Encode(&struct {
		RID string `cbor:"rid"`
		Op  string `cbor:"op"`
		A   any    `cbor:"a"`
	}{rid, op, args}, true)
	if err != nil {
		d.t.Fatal(err)
	}
	brokertest.Wait(d.t, d.c.Publish(topics.Up(d.uid, d.did, topics.UpRPC), 1, false, p), "publish "+op)
	for {
		var r cborReply
		if err := cbor.Unmarshal(d.wait("reply to "+op), &r); err != nil {
			d.t.Fatal(err)
		}
		if r.RID == rid {
			return r
		}
	}
}

// TestCBORDevice: a device on CBOR sends h as a byte string, gets the
// stored ranges of a refused commit in the error, and its file back.
func TestCBORDevice(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	alice := connect(t, b, b.ClientOptions("alice.p1", "alice", pw), "alice", "p1")
	alice.ok("hello", map[string]any{"enc": "cbor", "maxPkt": 1024}, nil)
	content := random(3000, 9)
	sum := sha256.Sum256(content)
	r := alice.cborCall("p1", "file.put", codec.FilePutArgs{N: "x.bin", Z: int64(len(content)), H: sum[:]})
	var put codec.FilePutResult
	if !r.OK || cbor.Unmarshal(r.R, &put) != nil || put.Chunk != 768 {
		t.Fatalf("file.put: %+v %+v", r, put)
	}
	parts := split(content, put.Chunk)
	alice.chunk(put.FID, 0, parts[0])
	alice.chunk(put.FID, 2, parts[2])
	r = alice.cborCall("c1", "file.commit", codec.FileArgs{FID: put.FID})
	if r.OK || r.Err == nil || r.Err.Code != 409 || len(r.Err.Have) != 2 || r.Err.Have[1] != [2]int{2, 2} {
		t.Fatalf("commit with chunks missing: %+v", r.Err)
	}
	alice.chunk(put.FID, 1, parts[1])
	alice.chunk(put.FID, 3, parts[3])
	r = alice.cborCall("c2", "file.commit", codec.FileArgs{FID: put.FID})
	var info codec.FileInfo
	if !r.OK || cbor.Unmarshal(r.R, &info) != nil || !bytes.Equal(info.H, sum[:]) || info.Z != int64(len(content)) {
		t.Fatalf("commit: %+v %+v", r, info)
	}
	got, _ := alice.downloadCBOR(put.FID)
	if !bytes.Equal(got, content) {
		t.Fatal("download differs")
	}
}

// downloadCBOR is download for a CBOR device (one window: small files).
func (d *dev) downloadCBOR(fid string) ([]byte, codec.FileGetResult) {
	d.t.Helper()
	r := d.cborCall("g1", "file.get", codec.FileArgs{FID: fid})
	var res codec.FileGetResult
	if !r.OK || cbor.Unmarshal(r.R, &res) != nil || res.Cnt != res.Count {
		d.t.Fatalf("file.get: %+v %+v", r, res)
	}
	for {
		d.mu.Lock()
		n := len(d.chunks)
		d.mu.Unlock()
		if n >= res.Count {
			break
		}
		d.waitChunk()
	}
	var out []byte
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; i < res.Count; i++ {
		out = append(out, d.chunks[i]...)
	}
	return out, res
}

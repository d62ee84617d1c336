package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/client"
)

// budgetConn cuts itself once it has written its budget of bytes: the
// link drops in the middle of an upload, at a point the test chooses.
type budgetConn struct {
	net.Conn
	left  atomic.Int64
	isCut atomic.Bool
}

func (c *budgetConn) Write(p []byte) (int, error) {
	if c.left.Add(-int64(len(p))) < 0 {
		c.isCut.Store(true)
		c.Conn.Close()
		return 0, io.ErrClosedPipe
	}
	return c.Conn.Write(p)
}

func (c *budgetConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.isCut.Load() {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// TestUploadDownloadAcrossADrop: the first connection drops after about
// 40 % of a file has been sent; Upload resumes from what the server has
// (sending only the rest), and Download reads it back intact.
func TestUploadDownloadAcrossADrop(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	content := make([]byte, 60_000)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range content {
		content[i] = byte(r.Uint32())
	}
	var mu sync.Mutex
	dials := 0
	dial := func() (net.Conn, error) {
		c, err := net.Dial("tcp", b.Addr("mqtt"))
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		dials++
		bc := &budgetConn{Conn: c}
		bc.left.Store(1 << 40)
		if dials == 1 {
			bc.left.Store(25_000) // CONNECT, hello, sync, file.put and some 20 chunks
		}
		return bc, nil
	}
	c, _ := start(t, client.Options{Dial: dial, UID: "alice", DID: "p1", MaxPkt: 1024})
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	info, st, err := c.Upload(ctx, "meter.bin", "", bytes.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	if st.Puts < 2 || st.Resumed == 0 || st.Sent >= 2*int64(len(content)) || info.Z != int64(len(content)) {
		t.Fatalf("upload across a drop: %+v, info %+v", st, info)
	}
	// Sent beyond the payload: only what was in flight when the link went.
	if over := st.Sent - int64(len(content)); over > 16*1024 {
		t.Fatalf("resent %d bytes, more than a window of chunks", over)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := c.Download(ctx, info.FID, f); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("downloaded %d bytes (%v), not the upload", len(got), err)
	}
	if _, err := c.Download(ctx, "01J9Z3K8Q4W6X2M7N5P0R8T1VB", f); err == nil {
		t.Fatal("download of an unknown file succeeded")
	} else if re := (*client.RPCError)(nil); !errors.As(err, &re) || re.Code != 404 {
		t.Fatalf("unknown file: %v", err)
	}
}

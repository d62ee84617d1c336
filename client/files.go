package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// FileInfo describes a stored file (PROTOCOL §11).
type FileInfo = codec.FileInfo

// ErrCorrupt is returned by Download when the content does not hash to
// the file's h.
var ErrCorrupt = errors.New("client: downloaded file does not match its hash")

// UploadStats count what an Upload sent.
type UploadStats struct {
	// Sent is the chunk bytes published, resends included; Sent minus
	// the file size is what a flaky link cost.
	Sent int64
	// Resumed is the bytes the server already had when an interrupted
	// upload was resumed (not sent again).
	Resumed int64
	// Puts is the number of file.put calls (1 + the resumes).
	Puts int
}

// Chunks in flight during an upload: what is in flight when a link drops
// is what gets sent again, so the window is kept small in bytes (8 KiB by
// default, Options.UploadWindow), at least 2 chunks (so a fast link still
// overlaps the server's fsync with the next chunk) and at most 16 (below
// the broker's receive maximum).
const (
	defaultUploadWindow = 8 << 10
	minChunksInFlight   = 2
	maxChunksInFlight   = 16
)

// chunksInFlight is the upload window in chunks of chunk bytes.
func (c *Client) chunksInFlight(chunk int) int {
	w := c.opts.UploadWindow
	if w <= 0 {
		w = defaultUploadWindow
	}
	return min(max(w/max(chunk, 1), minChunksInFlight), maxChunksInFlight)
}

// waitOnline waits until the device is online or ctx ends.
func (c *Client) waitOnline(ctx context.Context) error {
	if c.Online() {
		return nil
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.Online() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Upload stores size bytes of r as a file over MQTT: file.put, then every
// chunk the server does not have yet (QoS 1: each PUBACK means stored),
// then file.commit. It rides out drops while ctx lasts: once the device is
// online again it asks file.put what is stored and sends only the rest.
// The device must be running (Run).
func (c *Client) Upload(ctx context.Context, name, ct string, r io.ReaderAt, size int64) (FileInfo, UploadStats, error) {
	var st UploadStats
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return FileInfo{}, st, err
	}
	args := codec.FilePutArgs{N: name, Z: size, CT: ct, H: h.Sum(nil)}
	for {
		if err := c.waitOnline(ctx); err != nil {
			return FileInfo{}, st, err
		}
		var put codec.FilePutResult
		if err := c.Call(ctx, "file.put", args, &put); err != nil {
			if retryable(err) && pause(ctx) {
				continue
			}
			return FileInfo{}, st, err
		}
		st.Puts++
		missing := missing(put.Have, put.Chunk, size)
		if st.Puts > 1 {
			st.Resumed += size - bytesOf(missing, put.Chunk, size)
		}
		err := c.sendChunks(put.FID, put.Chunk, r, size, missing, &st)
		if err == nil {
			var info FileInfo
			err = c.Call(ctx, "file.commit", codec.FileArgs{FID: put.FID}, &info)
			if err == nil {
				return info, st, nil
			}
			var re *RPCError
			if errors.As(err, &re) && re.Code == 409 {
				continue // chunks lost on the way: file.put says which
			}
		}
		if !retryable(err) || !pause(ctx) {
			return FileInfo{}, st, err
		}
	}
}

// pause waits a moment before a retry (the link is being re-established)
// and reports false when ctx ended.
func pause(ctx context.Context) bool {
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errLocal marks failures of the caller's reader or writer: not retried.
var errLocal = errors.New("client: local file")

// retryable reports whether a file step failed because of the link (any
// failure that is not the server's refusal, the caller's file or ctx).
func retryable(err error) bool {
	var re *RPCError
	return !errors.As(err, &re) && !errors.Is(err, errLocal) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// missing lists the chunk indexes of a file of size bytes not in have.
func missing(have [][2]int, chunk int, size int64) []int {
	if chunk <= 0 {
		return nil
	}
	n := int((size + int64(chunk) - 1) / int64(chunk))
	got := make([]bool, n)
	for _, r := range have {
		for i := max(r[0], 0); i <= min(r[1], n-1); i++ {
			got[i] = true
		}
	}
	var out []int
	for i, g := range got {
		if !g {
			out = append(out, i)
		}
	}
	return out
}

func bytesOf(idx []int, chunk int, size int64) int64 {
	var n int64
	for _, i := range idx {
		n += min(int64(chunk), size-int64(i)*int64(chunk))
	}
	return n
}

// sendChunks publishes the chunks in idx on the current connection,
// uploadWindow at a time, and waits for their PUBACKs.
func (c *Client) sendChunks(fid string, chunk int, r io.ReaderAt, size int64, idx []int, st *UploadStats) error {
	cn := c.current()
	if cn == nil {
		return ErrOffline
	}
	base := c.up(topics.UpFile) + "/" + fid + "/"
	window := c.chunksInFlight(chunk)
	var inflight []paho.Token
	flush := func(keep int) error {
		for len(inflight) > keep {
			if err := c.wait(inflight[0], cn); err != nil {
				// A PUBLISH that failed (paho: connection lost) or went
				// unanswered is the link's doing: resume from file.put.
				return fmt.Errorf("%w: %v", errLinkLost, err)
			}
			inflight = inflight[1:]
		}
		return nil
	}
	for _, i := range idx {
		off := int64(i) * int64(chunk)
		buf := make([]byte, min(int64(chunk), size-off))
		if _, err := r.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: read chunk %d: %v", errLocal, i, err)
		}
		inflight = append(inflight, cn.c.Publish(base+strconv.Itoa(i), 1, false, buf))
		st.Sent += int64(len(buf))
		if err := flush(window - 1); err != nil {
			return err
		}
	}
	return flush(0)
}

// download collects the chunks of one file.get.
type download struct {
	mu  sync.Mutex
	got map[int][]byte
	ch  chan struct{}
}

// fileChunk hands a download chunk (topic rest "f/{fid}/{i}") to its
// download, on paho's goroutine.
func (c *Client) fileChunk(rest string, payload []byte) {
	rest, ok := strings.CutPrefix(rest, topics.ChanFile+"/")
	if !ok {
		return
	}
	fid, idx, ok := strings.Cut(rest, "/")
	if !ok {
		return
	}
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 {
		return
	}
	c.mu.Lock()
	d := c.downloads[fid]
	c.mu.Unlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	d.got[i] = append([]byte(nil), payload...)
	d.mu.Unlock()
	select {
	case d.ch <- struct{}{}:
	default:
	}
}

// Download reads file fid over MQTT into w (file.get, window by window),
// asking again for chunks lost to a drop, and checks the content against
// its hash (ErrCorrupt). The device must be running (Run).
func (c *Client) Download(ctx context.Context, fid string, w io.WriterAt) (FileInfo, error) {
	d := &download{got: map[int][]byte{}, ch: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.downloads == nil {
		c.downloads = map[string]*download{}
	}
	c.downloads[fid] = d
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.downloads, fid)
		c.mu.Unlock()
	}()
	var res codec.FileGetResult
	next, count := 0, -1
	for count < 0 || next < count {
		if err := c.waitOnline(ctx); err != nil {
			return FileInfo{}, err
		}
		if err := c.Call(ctx, "file.get", codec.FileArgs{FID: fid, From: next}, &res); err != nil {
			if retryable(err) && pause(ctx) {
				continue
			}
			return FileInfo{}, err
		}
		count = res.Count
		end := res.From + res.Cnt
		if err := c.awaitChunks(ctx, d, res.From, end); err != nil {
			if ctx.Err() != nil {
				return FileInfo{}, err
			}
		}
		// Write what arrived in order; the first hole is where to ask again.
		d.mu.Lock()
		for next < end {
			b, ok := d.got[next]
			if !ok {
				break
			}
			if _, err := w.WriteAt(b, int64(next)*int64(res.Chunk)); err != nil {
				d.mu.Unlock()
				return FileInfo{}, fmt.Errorf("%w: %v", errLocal, err)
			}
			delete(d.got, next)
			next++
		}
		d.mu.Unlock()
	}
	info := FileInfo{FID: fid, Z: res.Z, CT: res.CT, H: res.H}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(readerAt(w), 0, res.Z)); err != nil {
		return info, fmt.Errorf("client: verify %s: %w", fid, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(res.H) {
		return info, ErrCorrupt
	}
	return info, nil
}

// readerAt returns w as an io.ReaderAt when it is one (an *os.File, a
// buffer type), for the hash check.
func readerAt(w io.WriterAt) io.ReaderAt {
	if r, ok := w.(io.ReaderAt); ok {
		return r
	}
	return errReaderAt{}
}

type errReaderAt struct{}

func (errReaderAt) ReadAt([]byte, int64) (int, error) {
	return 0, errors.New("client: Download needs a WriterAt that is also a ReaderAt")
}

// awaitChunks waits until chunks [from, end) have arrived, the link is
// lost, or no chunk came for an RPC timeout.
func (c *Client) awaitChunks(ctx context.Context, d *download, from, end int) error {
	cn := c.current()
	if cn == nil {
		return ErrOffline
	}
	for {
		d.mu.Lock()
		n := 0
		for i := from; i < end; i++ {
			if _, ok := d.got[i]; ok {
				n++
			}
		}
		d.mu.Unlock()
		if n == end-from {
			return nil
		}
		tm := time.NewTimer(c.opts.RPCTimeout)
		select {
		case <-d.ch:
			tm.Stop()
		case <-cn.done:
			tm.Stop()
			return errLinkLost
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-tm.C:
			return ErrTimeout
		}
	}
}

package firmwaresim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tern-im/tern/client"
)

// ScenarioFile is the file scenario (RunFiles): every device uploads an
// image over its own flaky link and sends it to the next device's user in
// a DM; that device downloads it.
const ScenarioFile = "file"

// FileOptions configure the file scenario.
type FileOptions struct {
	// MQTT is host:port of the broker's MQTT listener.
	MQTT  string
	Fleet *Fleet
	// Devices is how many devices upload (the first of the fleet).
	Devices int
	// Size is the bytes of each device's file.
	Size int
	// MaxPkt is the devices' packet size (hello), which sets the chunk
	// size; 0 means the broker's.
	MaxPkt int
	// Link impairs every device's link through its own proxy (drops,
	// outages, latency, bandwidth).
	Link LinkOptions
	// Deadline bounds the whole run; files not through by then count as
	// missing.
	Deadline time.Duration
	// RPCTimeout bounds each RPC; 0 means 5 s.
	RPCTimeout time.Duration
}

// FileReport is the outcome of RunFiles.
type FileReport struct {
	Devices int `json:"devices"`
	Size    int `json:"size"`
	// Uploaded and Downloaded count files through each way; Corrupted
	// counts downloads whose bytes differ from the upload; Missing counts
	// files that did not make it both ways before the deadline.
	Uploaded   int `json:"uploaded"`
	Downloaded int `json:"downloaded"`
	Corrupted  int `json:"corrupted"`
	Missing    int `json:"missing"`
	// Payload is the bytes uploaded (files × size); Sent the chunk bytes
	// published, resends included; Resent = Sent − Payload, what the
	// drops cost; Resumed the bytes the server already had at a resume
	// (so were not sent again).
	Payload int64 `json:"payload_bytes"`
	Sent    int64 `json:"sent_bytes"`
	Resent  int64 `json:"resent_bytes"`
	Resumed int64 `json:"resumed_bytes"`
	// Resumes is the number of uploads resumed after a drop.
	Resumes int `json:"resumes"`
	// Drops is how many times links were cut.
	Drops   uint64        `json:"drops"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Goodput is uploaded payload bytes per second over the run.
	Goodput float64 `json:"goodput_bytes_per_s"`
	// Upload and Download are completion-time percentiles (ms): p50,
	// p90, p99, max.
	Upload   [4]float64 `json:"upload_ms"`
	Download [4]float64 `json:"download_ms"`
	// Errors holds the first few failures.
	Errors []string `json:"errors,omitempty"`
}

// Text renders the report for people.
func (r *FileReport) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "file scenario: %d devices × %d bytes in %.1fs, %d link drops\n", r.Devices, r.Size, r.Elapsed.Seconds(), r.Drops)
	fmt.Fprintf(&b, "  uploaded %d, downloaded %d, corrupted %d, missing %d\n", r.Uploaded, r.Downloaded, r.Corrupted, r.Missing)
	pct := 0.0
	if r.Payload > 0 {
		pct = 100 * float64(r.Resent) / float64(r.Payload)
	}
	fmt.Fprintf(&b, "  payload %d B, sent %d B, re-sent %d B (%.1f%%), resumed %d B over %d resumes\n",
		r.Payload, r.Sent, r.Resent, pct, r.Resumed, r.Resumes)
	fmt.Fprintf(&b, "  goodput %.0f kB/s\n", r.Goodput/1e3)
	fmt.Fprintf(&b, "  upload   ms p50 %.0f p90 %.0f p99 %.0f max %.0f\n", r.Upload[0], r.Upload[1], r.Upload[2], r.Upload[3])
	fmt.Fprintf(&b, "  download ms p50 %.0f p90 %.0f p99 %.0f max %.0f\n", r.Download[0], r.Download[1], r.Download[2], r.Download[3])
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	return b.String()
}

// memFile is an in-memory io.WriterAt and io.ReaderAt.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fileResult is one device's outcome.
type fileResult struct {
	up, down   time.Duration
	st         client.UploadStats
	uploaded   bool
	downloaded bool
	corrupt    bool
	err        error
}

// RunFiles runs the file scenario: each device connects through its own
// link, uploads Size random bytes (client.Upload: resumes after drops),
// attaches the file to a DM to the next device's user (which lets that
// user read it), and downloads the file the previous device sent
// (client.Download), comparing it byte for byte.
func RunFiles(ctx context.Context, o FileOptions) (*FileReport, error) {
	if o.Fleet == nil || o.Devices < 1 || o.Devices > len(o.Fleet.Devices()) {
		return nil, fmt.Errorf("file scenario: need 1..%d devices of the fleet", len(o.Fleet.Devices()))
	}
	if o.Size < 1 || o.Deadline <= 0 {
		return nil, errors.New("file scenario: size and deadline must be positive")
	}
	if o.RPCTimeout <= 0 {
		o.RPCTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Deadline)
	defer cancel()
	creds := o.Fleet.Devices()[:o.Devices]
	links := make([]*Link, len(creds))
	defer func() {
		for _, l := range links {
			if l != nil {
				l.Close()
			}
		}
	}()
	for i := range creds {
		l, err := NewLink("127.0.0.1", o.MQTT, nil, o.Link)
		if err != nil {
			return nil, err
		}
		links[i] = l
	}
	results := make([]fileResult, len(creds))
	start := time.Now()
	// Content differs from run to run: the server deduplicates by hash.
	seed := uint64(start.UnixNano())
	// inbox[i] gets the fid device i is to download ("" when its sender's
	// upload failed), once the DM that lets it read the file is stored.
	inbox := make([]chan string, len(creds))
	for i := range inbox {
		inbox[i] = make(chan string, 1)
	}
	var wg sync.WaitGroup
	for i, cr := range creds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := (i + 1) % len(creds)
			f := fileRun{o: o, cr: cr, link: links[i], i: i, seed: seed,
				peer: creds[next].UID, out: inbox[next], in: inbox[i], from: (i + len(creds) - 1) % len(creds)}
			results[i] = f.run(ctx)
		}()
	}
	wg.Wait()
	rep := &FileReport{Devices: len(creds), Size: o.Size, Elapsed: time.Since(start)}
	var ups, downs []time.Duration
	for i, r := range results {
		rep.Drops += links[i].Drops()
		rep.Sent += r.st.Sent
		rep.Resumed += r.st.Resumed
		rep.Resumes += max(r.st.Puts-1, 0)
		if r.uploaded {
			rep.Uploaded++
			rep.Payload += int64(o.Size)
			ups = append(ups, r.up)
		}
		if r.downloaded {
			rep.Downloaded++
			downs = append(downs, r.down)
		}
		if r.corrupt {
			rep.Corrupted++
		} else if !r.downloaded {
			rep.Missing++
		}
		if r.err != nil && len(rep.Errors) < 5 {
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s.%s: %v", creds[i].UID, creds[i].DID, r.err))
		}
	}
	rep.Resent = max(rep.Sent-rep.Payload, 0)
	if s := rep.Elapsed.Seconds(); s > 0 {
		rep.Goodput = float64(rep.Payload) / s
	}
	rep.Upload, rep.Download = durationPercentiles(ups), durationPercentiles(downs)
	return rep, nil
}

// content is the file device i uploads.
func content(i int, seed uint64, size int) []byte {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(i), seed))
	for j := range data {
		data[j] = byte(r.Uint32())
	}
	return data
}

// fileRun is one device of the file scenario.
type fileRun struct {
	o    FileOptions
	cr   Credentials
	link *Link
	i    int
	seed uint64
	// peer is the user the upload is sent to, out the inbox of its
	// device; in is this device's inbox, filled by device from.
	peer    string
	out, in chan string
	from    int
}

// run uploads this device's file, sends it to the peer in a DM (so that
// the peer may read it), hands the fid over and downloads the file the
// previous device sent.
func (f *fileRun) run(ctx context.Context) fileResult {
	var res fileResult
	handed := false
	defer func() {
		if !handed {
			f.out <- ""
		}
	}()
	c, err := client.New(client.Options{
		UID: f.cr.UID, DID: f.cr.DID, Secret: f.cr.Token, MaxPkt: f.o.MaxPkt, RPCTimeout: f.o.RPCTimeout, StartAtHead: true,
		Dial: func() (net.Conn, error) { return net.DialTimeout("tcp", f.link.Addr(), 10*time.Second) },
	})
	if err != nil {
		res.err = err
		return res
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { stop(); <-done }()

	data := content(f.i, f.seed, f.o.Size)
	t0 := time.Now()
	info, st, err := c.Upload(ctx, fmt.Sprintf("img-%05d.jpg", f.i), "image/jpeg", bytes.NewReader(data), int64(len(data)))
	res.st = st
	if err != nil {
		res.err = fmt.Errorf("upload: %w", err)
	} else {
		res.up, res.uploaded = time.Since(t0), true
		if f.peer != f.cr.UID {
			if _, err := c.SendMsg(client.Outgoing{To: f.peer, B: "photo", Att: []string{info.FID}}); err != nil {
				res.err = fmt.Errorf("send: %w", err)
			} else if err := c.Flush(ctx); err != nil {
				res.err = fmt.Errorf("send: %w", err)
			} else {
				f.out <- info.FID
				handed = true
			}
		} else {
			f.out <- info.FID
			handed = true
		}
	}
	var fid string
	select {
	case fid = <-f.in:
	case <-ctx.Done():
		if res.err == nil {
			res.err = ctx.Err()
		}
		return res
	}
	if fid == "" {
		return res // the sender's upload failed: counted as missing
	}
	t1 := time.Now()
	var got memFile
	if _, err := c.Download(ctx, fid, &got); err != nil {
		res.corrupt = errors.Is(err, client.ErrCorrupt)
		if res.err == nil {
			res.err = fmt.Errorf("download: %w", err)
		}
		return res
	}
	if !bytes.Equal(got.b, content(f.from, f.seed, f.o.Size)) {
		res.corrupt = true
		res.err = errors.New("download: bytes differ from the upload")
		return res
	}
	res.down, res.downloaded = time.Since(t1), true
	return res
}

// durationPercentiles returns p50, p90, p99 and max of ds in milliseconds.
func durationPercentiles(ds []time.Duration) [4]float64 {
	var out [4]float64
	if len(ds) == 0 {
		return out
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := min(int(q*float64(len(ds))), len(ds)-1)
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return [4]float64{at(0.50), at(0.90), at(0.99), float64(ds[len(ds)-1]) / float64(time.Millisecond)}
}

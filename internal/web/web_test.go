package web_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/web"
)

const pw = "password-1"

type client struct {
	t     testing.TB
	base  string
	token string
}

func (c *client) do(method, p string, hdr map[string]string, body []byte) *http.Response {
	c.t.Helper()
	u := p
	if !strings.HasPrefix(p, "http") {
		u = c.base + p
	}
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, p, err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t testing.TB, r *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantStatus(t testing.TB, r *http.Response, code int) {
	t.Helper()
	if r.StatusCode != code {
		t.Fatalf("%s %s: status %d (%s), want %d", r.Request.Method, r.Request.URL.Path, r.StatusCode, readAll(t, r), code)
	}
}

// login gets a device token for uid with POST /v1/login.
func login(t testing.TB, b *brokertest.Broker, uid, did string) (*client, string) {
	t.Helper()
	c := &client{t: t, base: b.HTTPURL()}
	body, _ := json.Marshal(map[string]string{"uid": uid, "password": pw, "did": did})
	r := c.do("POST", "/v1/login", map[string]string{"Content-Type": "application/json"}, body)
	wantStatus(t, r, 200)
	var out struct{ UID, DID, Token string }
	if err := json.Unmarshal(readAll(t, r), &out); err != nil {
		t.Fatal(err)
	}
	if out.UID != uid || out.Token == "" || (did != "" && out.DID != did) || (did == "" && !strings.HasPrefix(out.DID, "web-")) {
		t.Fatalf("login = %+v", out)
	}
	c.token = out.Token
	return c, out.DID
}

func tusHeaders(extra map[string]string) map[string]string {
	h := map[string]string{"Tus-Resumable": "1.0.0"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

func meta(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

// create starts a tus upload and returns its URL.
func (c *client) create(size int, name, typ string) string {
	c.t.Helper()
	r := c.do("POST", web.FilesPath, tusHeaders(map[string]string{
		"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta("filename", name, "filetype", typ),
	}), nil)
	wantStatus(c.t, r, 201)
	loc := r.Header.Get("Location")
	if loc == "" {
		c.t.Fatal("no Location")
	}
	return loc
}

func (c *client) patch(loc string, offset int, body []byte) *http.Response {
	c.t.Helper()
	return c.do("PATCH", loc, tusHeaders(map[string]string{
		"Upload-Offset": strconv.Itoa(offset), "Content-Type": "application/offset+octet-stream",
	}), body)
}

func (c *client) offset(loc string) int {
	c.t.Helper()
	r := c.do("HEAD", loc, tusHeaders(nil), nil)
	wantStatus(c.t, r, 200)
	n, err := strconv.Atoi(r.Header.Get("Upload-Offset"))
	if err != nil {
		c.t.Fatalf("Upload-Offset %q", r.Header.Get("Upload-Offset"))
	}
	return n
}

// cutPatch sends a PATCH announcing all of rest but only its first n
// bytes, then closes the connection: a link lost mid-upload.
func (c *client) cutPatch(loc string, offset int, rest []byte, n int) {
	c.t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Upload-Offset: %d\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n",
		u.Path, u.Host, c.token, offset, len(rest))
	w.Write(rest[:n])
	if err := w.Flush(); err != nil {
		c.t.Fatal(err)
	}
	// The body ends early (as when the link drops); wait for the server's
	// answer, so that it has consumed what was sent before the next request.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		c.t.Fatalf("cut PATCH answered %d", resp.StatusCode)
	}
	if err := conn.Close(); err != nil {
		c.t.Fatal(err)
	}
}

func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(r.Uint32()), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// upload sends content in one PATCH and returns its fid.
func (c *client) upload(content []byte, name, typ string) string {
	c.t.Helper()
	loc := c.create(len(content), name, typ)
	r := c.patch(loc, 0, content)
	wantStatus(c.t, r, 204)
	return path.Base(loc)
}

// TestTusUploadInTwoParts: a PATCH cut midway, HEAD tells the offset, the
// rest is sent, the finished upload is a committed file whose fid is the
// last segment of the upload URL; it downloads with Range and ETag and
// its sniffed type, and a thumbnail is made once.
func TestTusUploadInTwoParts(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	alice, _ := login(t, b, "alice", "")
	content := pngBytes(t, 640, 480)
	loc := alice.create(len(content), "meter.png", "text/plain") // the declared type is not trusted
	fid := path.Base(loc)

	half := len(content) / 2
	alice.cutPatch(loc, 0, content, half)
	if got := alice.offset(loc); got != half {
		t.Fatalf("offset after the cut = %d, want %d", got, half)
	}
	r := alice.patch(loc, half, content[half:])
	wantStatus(t, r, 204)
	if r.Header.Get("Upload-Offset") != strconv.Itoa(len(content)) {
		t.Fatalf("final offset %q", r.Header.Get("Upload-Offset"))
	}

	// Range download: ETag is the content hash, the type is sniffed.
	r = alice.do("GET", web.FilesPath+fid, map[string]string{"Range": "bytes=100-1099"}, nil)
	wantStatus(t, r, 206)
	if got := readAll(t, r); !bytes.Equal(got, content[100:1100]) {
		t.Fatalf("range body differs (%d bytes)", len(got))
	}
	if ct, et := r.Header.Get("Content-Type"), r.Header.Get("ETag"); ct != "image/png" || et != `"`+hash(content)+`"` {
		t.Fatalf("Content-Type %q, ETag %q", ct, et)
	}
	r = alice.do("GET", web.FilesPath+fid, nil, nil)
	wantStatus(t, r, 200)
	if !bytes.Equal(readAll(t, r), content) {
		t.Fatal("full download differs")
	}
	r = alice.do("GET", web.FilesPath+fid, map[string]string{"If-None-Match": `"` + hash(content) + `"`}, nil)
	wantStatus(t, r, 304)

	// The thumbnail: JPEG, longest side 320, made once.
	for range 2 {
		r = alice.do("GET", web.FilesPath+fid+"?thumb=1", nil, nil)
		wantStatus(t, r, 200)
		img, err := jpeg.Decode(r.Body)
		if err != nil || r.Header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("thumbnail: %v, %q", err, r.Header.Get("Content-Type"))
		}
		if bd := img.Bounds(); bd.Dx() != 320 || bd.Dy() != 240 {
			t.Fatalf("thumbnail is %v", bd)
		}
	}
	if n := b.Files().Stats().ThumbsMade; n != 1 {
		t.Fatalf("thumbnails made = %d, want 1", n)
	}

	// Nobody else sees it, and nobody without a token.
	bob, _ := login(t, b, "bob", "web")
	for _, p := range []string{web.FilesPath + fid, web.FilesPath + fid + "?thumb=1", web.FilesPath + "01J9Z3K8Q4W6X2M7N5P0R8T1VB"} {
		r = bob.do("GET", p, nil, nil)
		wantStatus(t, r, 404)
		var e struct{ Code int }
		if json.Unmarshal(readAll(t, r), &e); e.Code != 404 {
			t.Fatalf("bob GET %s: body code %d", p, e.Code)
		}
	}
	r = bob.do("HEAD", loc, tusHeaders(nil), nil)
	wantStatus(t, r, 404)
	anon := &client{t: t, base: b.HTTPURL()}
	wantStatus(t, anon.do("GET", web.FilesPath+fid, nil, nil), 401)
	wantStatus(t, anon.do("POST", web.FilesPath, tusHeaders(map[string]string{"Upload-Length": "10"}), nil), 401)
}

// TestTusCommitsCompleteUpload: an upload whose bytes are all stored but
// that was never committed (the node that took its last PATCH stopped
// first) is committed by the next HEAD, and downloads.
func TestTusCommitsCompleteUpload(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	alice, _ := login(t, b, "alice", "")
	content := []byte("every byte stored, no commit")
	loc := alice.create(len(content), "a.txt", "text/plain")
	fid := path.Base(loc)
	// The bytes, without the last PATCH's commit.
	if n, err := b.Files().Append("alice", fid, 0, bytes.NewReader(content)); err != nil || n != int64(len(content)) {
		t.Fatalf("append = %d, %v", n, err)
	}
	wantStatus(t, alice.do("GET", web.FilesPath+fid, nil, nil), 400) // not committed yet
	if got := alice.offset(loc); got != len(content) {
		t.Fatalf("offset = %d, want %d", got, len(content))
	}
	r := alice.do("GET", web.FilesPath+fid, nil, nil)
	wantStatus(t, r, 200)
	if !bytes.Equal(readAll(t, r), content) {
		t.Fatal("download differs")
	}
}

// TestTusTerminateAndLimits: DELETE ends an upload; uploads beyond the
// largest file or the quota are refused with 413.
func TestTusTerminateAndLimits(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.Files.MaxSize = 5000
		c.Files.Quota = 8000
	})
	b.AddUser("alice", pw)
	alice, _ := login(t, b, "alice", "laptop")
	r := alice.do("POST", web.FilesPath, tusHeaders(map[string]string{"Upload-Length": "5001"}), nil)
	wantStatus(t, r, 413)
	loc := alice.create(5000, "a", "")
	r = alice.do("POST", web.FilesPath, tusHeaders(map[string]string{"Upload-Length": "3001"}), nil)
	wantStatus(t, r, 413)
	wantStatus(t, alice.do("DELETE", loc, tusHeaders(nil), nil), 204)
	wantStatus(t, alice.do("HEAD", loc, tusHeaders(nil), nil), 404)
	alice.create(5000, "b", "") // the quota was given back
}

// TestThumbOfBombRefused: an image whose header claims 10^10 pixels is
// stored, but never decoded: its thumbnail is 413.
func TestThumbOfBombRefused(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	alice, _ := login(t, b, "alice", "")
	bomb := pngBytes(t, 1, 1)
	binary.BigEndian.PutUint32(bomb[16:], 100_000)
	binary.BigEndian.PutUint32(bomb[20:], 100_000)
	binary.BigEndian.PutUint32(bomb[29:], crc32.ChecksumIEEE(bomb[12:29]))
	fid := alice.upload(bomb, "bomb.png", "image/png")
	r := alice.do("GET", web.FilesPath+fid+"?thumb=1", nil, nil)
	wantStatus(t, r, 413)
	if n := b.Files().Stats().ThumbsMade; n != 0 {
		t.Fatalf("thumbnails made = %d", n)
	}
	wantStatus(t, alice.do("GET", web.FilesPath+fid, nil, nil), 200)
}

// TestLogin: a token from POST /v1/login connects over MQTT as that
// device; bad credentials and tokens-as-passwords get 401.
func TestLogin(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	c, did := login(t, b, "alice", "")
	if err := b.TryConnect(b.ClientOptions("alice."+did, "alice", c.token)); err != nil {
		t.Fatalf("MQTT with the login token: %v", err)
	}
	anon := &client{t: t, base: b.HTTPURL()}
	for _, body := range []string{
		`{"uid":"alice","password":"wrong-password"}`,
		`{"uid":"nobody","password":"password-1"}`,
		`{"uid":"alice","password":"` + c.token + `"}`,
	} {
		r := anon.do("POST", "/v1/login", nil, []byte(body))
		wantStatus(t, r, 401)
	}
	wantStatus(t, anon.do("POST", "/v1/login", nil, []byte(`{"uid":"alice","password":"password-1","did":"Bad DID"}`)), 400)
	wantStatus(t, anon.do("POST", "/v1/login", nil, []byte(`not json`)), 400)
}

// TestLoginThrottled: after auth.max_failures bad passwords, even the
// right one is refused (429) until the lockout ends; the address is locked
// after four times as many.
func TestLoginThrottled(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.MaxFailures = 2
		c.Auth.Lockout = time.Hour
		c.Auth.MaxLockout = time.Hour
	})
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	anon := &client{t: t, base: b.HTTPURL()}
	for range 2 {
		wantStatus(t, anon.do("POST", "/v1/login", nil, []byte(`{"uid":"alice","password":"wrong-password"}`)), 401)
	}
	wantStatus(t, anon.do("POST", "/v1/login", nil, []byte(`{"uid":"alice","password":"password-1"}`)), 429)
	// The address allows four times as many (a shared NAT): bob logs in.
	wantStatus(t, anon.do("POST", "/v1/login", nil, []byte(`{"uid":"bob","password":"password-1"}`)), 200)
	for i := range 6 {
		body := fmt.Sprintf(`{"uid":"u%d","password":"wrong-password"}`, i)
		wantStatus(t, anon.do("POST", "/v1/login", nil, []byte(body)), 401)
	}
	// 2 + 6 failures from this address: now it is locked for everyone.
	wantStatus(t, anon.do("POST", "/v1/login", nil, []byte(`{"uid":"carol","password":"password-1"}`)), 429)
}

// TestTusDiscovery: OPTIONS needs no token and tells the tus version,
// extensions and the largest upload.
func TestTusDiscovery(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	anon := &client{t: t, base: b.HTTPURL()}
	r := anon.do("OPTIONS", web.FilesPath, tusHeaders(nil), nil)
	if r.StatusCode != 200 && r.StatusCode != 204 {
		t.Fatalf("OPTIONS: %d", r.StatusCode)
	}
	ext := r.Header.Get("Tus-Extension")
	if r.Header.Get("Tus-Version") == "" || !strings.Contains(ext, "creation") || !strings.Contains(ext, "termination") ||
		r.Header.Get("Tus-Max-Size") != strconv.Itoa(int(b.Config.Files.MaxSize)) {
		t.Fatalf("discovery headers: %v", r.Header)
	}
}

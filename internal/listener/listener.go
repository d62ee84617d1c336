// Package listener provides the MQTT listeners Tern adds to mochi: TCP
// (optionally TLS) and MQTT over WebSocket on a fixed path. Both bind in
// Init, so an address of ":0" works and Address reports the bound port.
//
// Both accept through a gated listener below TLS and HTTP: temporary
// accept errors (file descriptors exhausted) are retried with a backoff
// instead of ending the listener, and a Gate refuses connections beyond
// its caps before any bytes are read.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// bound is what both listeners share: an id, an address bound in Init
// (optionally behind TLS) and a connect deadline.
type bound struct {
	// ConnectTimeout bounds the time to a complete CONNECT; mochi replaces
	// the deadline with the keepalive one once CONNECT is read.
	ConnectTimeout time.Duration
	// Gate, if set, admits or refuses each new connection; it may be
	// shared by several listeners.
	Gate     *Gate
	id, addr string
	tls      *tls.Config
	ln       net.Listener
	gated    *gated
	log      *slog.Logger
	once     sync.Once
}

// ID returns the listener id.
func (b *bound) ID() string { return b.id }

// Address returns the bound address once initialised.
func (b *bound) Address() string {
	if b.ln != nil {
		return b.ln.Addr().String()
	}
	return b.addr
}

// bind listens on the address, behind TLS when configured.
func (b *bound) bind(log *slog.Logger) error {
	b.log = log
	raw, err := net.Listen("tcp", b.addr)
	if err != nil {
		return err
	}
	b.gated = newGated(raw, b.id, b.Gate, log)
	var ln net.Listener = b.gated
	if b.tls != nil {
		ln = tls.NewListener(ln, b.tls)
	}
	b.ln = ln
	return nil
}

// Problem returns why the listener is not accepting connections (accept
// failing, or stopped), or "" while it accepts.
func (b *bound) Problem() string {
	if b.gated == nil {
		return "not started"
	}
	return b.gated.problem()
}

// deadline puts the connect deadline on a new connection.
func (b *bound) deadline(c net.Conn) {
	if b.ConnectTimeout > 0 {
		_ = c.SetDeadline(time.Now().Add(b.ConnectTimeout)) // a failure surfaces on read
	}
}

// TCP is a plain or TLS TCP listener.
type TCP struct{ bound }

// NewTCP returns a TCP listener; tlsConf may be nil.
func NewTCP(id, addr string, tlsConf *tls.Config) *TCP {
	return &TCP{bound{id: id, addr: addr, tls: tlsConf}}
}

// Protocol returns "tcp" or "tls".
func (l *TCP) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}

// Init binds the address.
func (l *TCP) Init(log *slog.Logger) error { return l.bind(log) }

// Serve accepts connections until Close. Temporary accept errors never
// reach it: the gated listener retries them.
func (l *TCP) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Error("listener stopped", "listener", l.id, "error", err)
			}
			return
		}
		l.deadline(conn)
		go func() {
			if err := establish(l.id, conn); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("connection ended", "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// Close stops accepting and closes the listener's clients.
func (l *TCP) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		if l.ln != nil {
			_ = l.ln.Close() // the accept loop ends on the error it causes
		}
		closeClients(l.id)
	})
}

// WS serves MQTT over WebSocket on one path (PROTOCOL §3: /mqtt).
type WS struct {
	bound
	path      string
	srv       *http.Server
	establish listeners.EstablishFn
	upgrader  websocket.Upgrader
}

// NewWS returns a WebSocket listener; tlsConf may be nil.
func NewWS(id, addr, path string, tlsConf *tls.Config) *WS {
	return &WS{bound: bound{id: id, addr: addr, tls: tlsConf}, path: path, upgrader: newUpgrader()}
}

// Protocol returns "ws" or "wss".
func (l *WS) Protocol() string {
	if l.tls != nil {
		return "wss"
	}
	return "ws"
}

// Init binds the address.
func (l *WS) Init(log *slog.Logger) error {
	if err := l.bind(log); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc(l.path, l.handle)
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

func (l *WS) handle(w http.ResponseWriter, r *http.Request) {
	serveWS(w, r, &l.upgrader, l.id, l.ConnectTimeout, l.establish, l.log)
}

// newUpgrader returns the WebSocket upgrader of MQTT over WebSocket.
func newUpgrader() websocket.Upgrader {
	return websocket.Upgrader{
		Subprotocols: []string{"mqtt", "mqttv3.1"},
		// Devices and browsers of any origin authenticate with MQTT
		// credentials; the origin is not a security boundary here.
		CheckOrigin:     func(*http.Request) bool { return true },
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
	}
}

// serveWS upgrades r and hands the connection to mochi as listener id,
// with the connect deadline; it returns when the connection ends.
func serveWS(w http.ResponseWriter, r *http.Request, up *websocket.Upgrader, id string,
	connectTimeout time.Duration, establish listeners.EstablishFn, log *slog.Logger) {
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	defer c.Close()
	if connectTimeout > 0 {
		_ = c.NetConn().SetDeadline(time.Now().Add(connectTimeout)) // a failure surfaces on read
	}
	if err := establish(id, &wsConn{Conn: c.NetConn(), c: c}); err != nil && !errors.Is(err, io.EOF) {
		log.Debug("connection ended", "remote", r.RemoteAddr, "error", err)
	}
}

// Serve serves HTTP upgrades until Close.
func (l *WS) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener", "error", err)
	}
}

// Close stops the HTTP server and closes the listener's clients.
func (l *WS) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		closeClients(l.id)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if l.srv != nil {
			_ = l.srv.Shutdown(ctx) // hijacked conns are closed by closeClients
		}
	})
}

// wsConn is a net.Conn over WebSocket binary messages: MQTT packets may
// span messages and a message may hold several packets.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				continue // MQTT over WebSocket is binary only
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }

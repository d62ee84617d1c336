package listener

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Handler serves MQTT over WebSocket as an http.Handler, so that a web
// server of its own (Tern's HTTP port: the web client, /v1/…) can mount
// it at /mqtt and a browser reaches page and broker on one origin. It is
// a mochi listener that binds nothing: mochi calls Init, Serve and Close
// as for any listener, and connections arrive through ServeHTTP.
//
// The Gate applies per upgrade request, before the upgrade: a refused
// request gets 503 and no WebSocket.
type Handler struct {
	// ConnectTimeout bounds the time to a complete CONNECT.
	ConnectTimeout time.Duration
	// Gate, if set, admits or refuses each upgrade request.
	Gate *Gate

	id       string
	upgrader websocket.Upgrader
	log      *slog.Logger

	mu        sync.Mutex
	establish listeners.EstablishFn // nil before Serve and after Close
	closed    bool
	// served is closed by the first Serve or Close: mochi calls Serve on
	// a goroutine of its own, so a request may arrive just before it.
	served chan struct{}
}

// NewHandler returns a WebSocket handler registered with mochi as id.
func NewHandler(id string) *Handler {
	return &Handler{id: id, upgrader: newUpgrader(), log: slog.Default(), served: make(chan struct{})}
}

// ID returns the listener id.
func (h *Handler) ID() string { return h.id }

// Address returns "" : the handler has no address of its own (the web
// server mounting it has).
func (h *Handler) Address() string { return "" }

// Protocol returns "ws".
func (h *Handler) Protocol() string { return "ws" }

// Init keeps the logger.
func (h *Handler) Init(log *slog.Logger) error {
	h.log = log
	return nil
}

// Serve starts handing upgraded connections to establish; it returns at
// once.
func (h *Handler) Serve(establish listeners.EstablishFn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.establish = establish
		close(h.served)
	}
}

// Close refuses later upgrades and closes the handler's clients.
func (h *Handler) Close(closeClients listeners.CloseFn) {
	h.mu.Lock()
	first := !h.closed
	if first && h.establish == nil {
		close(h.served)
	}
	h.closed, h.establish = true, nil
	h.mu.Unlock()
	if first {
		closeClients(h.id)
	}
}

// Problem returns "stopped" once closed, else "": requests that arrive
// before mochi's Serve wait for it.
func (h *Handler) Problem() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return "stopped"
	}
	return ""
}

// ServeHTTP upgrades the request to MQTT over WebSocket (503 when the
// broker is not serving or the gate refuses) and serves the connection
// until it ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-h.served:
	case <-r.Context().Done():
		return
	}
	h.mu.Lock()
	establish := h.establish
	h.mu.Unlock()
	if establish == nil {
		http.Error(w, "mqtt not serving", http.StatusServiceUnavailable)
		return
	}
	release, reason := h.Gate.admit(remoteAddr(r.RemoteAddr))
	if reason != "" {
		if h.Gate.Refused != nil {
			h.Gate.Refused(reason)
		}
		h.log.Debug("connection refused", "remote", r.RemoteAddr, "reason", reason)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	defer release()
	serveWS(w, r, &h.upgrader, h.id, h.ConnectTimeout, establish, h.log)
}

// remoteAddr parses an http.Request's RemoteAddr ("ip:port"), without
// any name lookup.
func remoteAddr(s string) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return &net.TCPAddr{} // counted as one unknown address
	}
	return net.TCPAddrFromAddrPort(ap)
}

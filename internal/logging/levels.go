package logging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Messages mochi logs that Tern re-levels.
const (
	msgPublishError = "publish packet error"    // a hook's OnPublish returned a reason code
	msgPacketError  = "error processing packet" // a client's packet failed, often a dead connection
)

// DropSummaryEvery is how often, at most, Levels logs the aggregated
// count of dropped connections.
const DropSummaryEvery = time.Minute

// Levels wraps mochi's logger so that its lines carry the level of whose
// fault they are: client faults at debug or info, server faults at
// error, and one aggregated info line for dropped connections instead of
// a warning per device.
//
//   - "publish packet error" with a reason code is a refused client
//     publish (unknown recipient, bad payload, not allowed): the client
//     got the code and an err event, so debug. Only 0x80 (unspecified,
//     Tern's server fault) stays error.
//   - "error processing packet" for a dead connection (EOF, broken pipe,
//     connection reset, timeout, closed) is debug, and counted into an
//     info line "connections dropped" at most every DropSummaryEvery.
//     A reason code (an ACL denial, a protocol violation) is the client's
//     fault: info, naming the topic of the packet.
//
// Wrap it outside Redact: it reads the topic from the packet before
// Redact hides the packet.
func Levels(h slog.Handler) slog.Handler {
	return &levels{h: h, drops: &drops{now: time.Now}}
}

type levels struct {
	h     slog.Handler
	drops *drops
}

type drops struct {
	mu    sync.Mutex
	n     int
	since time.Time
	last  time.Time
	now   func() time.Time
}

// count records a drop and returns the count to report, or 0 when the
// summary is not due.
func (d *drops) count() (int, time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.n == 0 {
		d.since = now
	}
	d.n++
	if !d.last.IsZero() && now.Sub(d.last) < DropSummaryEvery {
		return 0, 0
	}
	n, span := d.n, now.Sub(d.since)
	d.n, d.last = 0, now
	return n, span
}

func (l *levels) Enabled(ctx context.Context, lv slog.Level) bool { return l.h.Enabled(ctx, lv) }

func (l *levels) WithAttrs(as []slog.Attr) slog.Handler {
	return &levels{h: l.h.WithAttrs(as), drops: l.drops}
}

func (l *levels) WithGroup(name string) slog.Handler {
	return &levels{h: l.h.WithGroup(name), drops: l.drops}
}

func (l *levels) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message != msgPublishError && rec.Message != msgPacketError {
		return l.h.Handle(ctx, rec)
	}
	var err error
	var topic string
	rec.Attrs(func(a slog.Attr) bool {
		switch v := a.Value.Any().(type) {
		case error:
			if a.Key == "error" {
				err = v
			}
		case packets.Packet:
			topic = v.TopicName
		}
		return true
	})
	var code packets.Code
	isCode := errors.As(err, &code)
	level := rec.Level
	switch {
	case rec.Message == msgPublishError && isCode && code.Code != packets.ErrUnspecifiedError.Code:
		level = slog.LevelDebug
	case rec.Message == msgPacketError && dropped(err):
		level = slog.LevelDebug
		if n, span := l.drops.count(); n > 0 && l.h.Enabled(ctx, slog.LevelInfo) {
			sum := slog.NewRecord(rec.Time, slog.LevelInfo, "connections dropped", 0)
			sum.AddAttrs(slog.Int("count", n), slog.Duration("over", span.Round(time.Second)))
			if err := l.h.Handle(ctx, sum); err != nil {
				return err
			}
		}
	case rec.Message == msgPacketError && isCode:
		level = slog.LevelInfo
	default:
		return l.h.Handle(ctx, rec)
	}
	if !l.h.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(rec.Time, level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
	if topic != "" {
		out.AddAttrs(slog.String(KeyTopic, topic))
	}
	return l.h.Handle(ctx, out)
}

// dropped reports whether err means the connection went away.
func dropped(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	s := err.Error()
	for _, m := range []string{"broken pipe", "connection reset", "use of closed network connection", "i/o timeout", "EOF"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// Package logging holds Tern's log helper: a handler that keeps packet
// contents (message bodies, passwords) out of the logs.
package logging

import (
	"context"
	"log/slog"
)

// KeyTopic is the attribute key of an MQTT topic name.
const KeyTopic = "topic"

// Redact wraps h so that attributes holding whole packets or wills — mochi
// logs them on errors, bodies and CONNECT passwords included — are
// replaced by a marker.
func Redact(h slog.Handler) slog.Handler { return redact{h} }

type redact struct{ h slog.Handler }

// redacted are the attribute keys mochi uses for packets and wills.
var redacted = map[string]bool{"pk": true, "packet": true, "will": true, "payload": true}

func (r redact) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redact) Handle(ctx context.Context, rec slog.Record) error {
	dirty := false
	rec.Attrs(func(a slog.Attr) bool {
		dirty = redacted[a.Key]
		return !dirty
	})
	if !dirty {
		return r.h.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		if redacted[a.Key] {
			a = slog.String(a.Key, "[redacted]")
		}
		out.AddAttrs(a)
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redact) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		if redacted[a.Key] {
			a = slog.String(a.Key, "[redacted]")
		}
		clean[i] = a
	}
	return redact{r.h.WithAttrs(clean)}
}

func (r redact) WithGroup(name string) slog.Handler { return redact{r.h.WithGroup(name)} }

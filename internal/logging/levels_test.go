package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// capture is a slog.Handler that keeps the records it gets.
type capture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
	return nil
}
func (c *capture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *capture) WithGroup(string) slog.Handler      { return c }

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
		}
		return true
	})
	return v
}

func TestLevels(t *testing.T) {
	t.Parallel()
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "im/up/bob/p1/msg", Payload: []byte("secret body")}
	tests := []struct {
		name  string
		msg   string
		level slog.Level
		err   error
		want  slog.Level
		topic string
	}{
		{"refused publish (unknown user)", msgPublishError, slog.LevelError, packets.ErrImplementationSpecificError, slog.LevelDebug, "im/up/bob/p1/msg"},
		{"refused publish (bad payload)", msgPublishError, slog.LevelError, packets.ErrPayloadFormatInvalid, slog.LevelDebug, "im/up/bob/p1/msg"},
		{"server fault", msgPublishError, slog.LevelError, packets.ErrUnspecifiedError, slog.LevelError, ""},
		{"acl deny disconnect", msgPacketError, slog.LevelWarn, packets.ErrNotAuthorized, slog.LevelInfo, "im/up/bob/p1/msg"},
		{"broken pipe", msgPacketError, slog.LevelWarn, fmt.Errorf("write: %w", syscall.EPIPE), slog.LevelDebug, "im/up/bob/p1/msg"},
		{"connection reset", msgPacketError, slog.LevelWarn, errors.New("read tcp 1->2: connection reset by peer"), slog.LevelDebug, "im/up/bob/p1/msg"},
		{"other warning", msgPacketError, slog.LevelWarn, errors.New("something odd"), slog.LevelWarn, ""},
		{"unrelated", "attached listener", slog.LevelInfo, nil, slog.LevelInfo, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &capture{}
			log := slog.New(Levels(Redact(c)))
			log.Log(context.Background(), tt.level, tt.msg, "error", tt.err, "pk", pub)
			var got *slog.Record
			for i := range c.recs {
				if c.recs[i].Message == tt.msg {
					got = &c.recs[i]
				}
			}
			if got == nil {
				t.Fatalf("no %q record in %v", tt.msg, c.recs)
			}
			if got.Level != tt.want {
				t.Errorf("level %v, want %v", got.Level, tt.want)
			}
			if tt.topic != "" && attr(*got, KeyTopic) != tt.topic {
				t.Errorf("topic %q, want %q", attr(*got, KeyTopic), tt.topic)
			}
			if v := attr(*got, "pk"); v != "[redacted]" {
				t.Errorf("packet not redacted: %q", v)
			}
		})
	}
}

// TestDropSummary: many dropped connections make one info line per
// DropSummaryEvery, not a warning each.
func TestDropSummary(t *testing.T) {
	t.Parallel()
	c := &capture{}
	h := Levels(c).(*levels)
	now := time.Unix(1000, 0)
	h.drops.now = func() time.Time { return now }
	log := slog.New(h)
	for i := range 168 {
		now = now.Add(10 * time.Second / 168)
		log.Warn(msgPacketError, "error", syscall.ECONNRESET, "client", fmt.Sprint("d", i))
	}
	now = now.Add(DropSummaryEvery)
	log.Warn(msgPacketError, "error", syscall.EPIPE)
	var infos, above int
	var counts []string
	for _, r := range c.recs {
		switch {
		case r.Message == "connections dropped" && r.Level == slog.LevelInfo:
			infos++
			counts = append(counts, attr(r, "count"))
		case r.Level > slog.LevelInfo:
			above++
		}
	}
	if above != 0 {
		t.Errorf("%d records above info", above)
	}
	if infos != 2 || counts[0] != "1" || counts[1] != "168" {
		t.Errorf("summaries %d with counts %v, want 2 with [1 168]", infos, counts)
	}
}

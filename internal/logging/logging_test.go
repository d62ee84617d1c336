package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(Redact(slog.NewTextHandler(&buf, nil)))
	log.Warn("error processing packet", "client", "alice.p1", "pk", struct{ Payload string }{"top secret body"})
	log.With("will", "secret will").Info("x")
	out := buf.String()
	if strings.Contains(out, "secret") {
		t.Fatalf("body leaked: %s", out)
	}
	if !strings.Contains(out, "client=alice.p1") || !strings.Contains(out, "pk=[redacted]") {
		t.Fatalf("attributes lost: %s", out)
	}
}

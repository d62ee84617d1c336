package store

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestOpenInUse: a second Open of a held data dir says so in plain words,
// not with Badger's lock message.
func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(dir, Options{})
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second Open: %v, want *InUseError", err)
	}
	if want := "data dir " + dir + " is in use by another tern process"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

// TestBadgerLinesHaveNoNewline: Badger ends most lines with "\n", which
// slog's text handler printed as a literal \n.
func TestBadgerLinesHaveNoNewline(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Infof("Lifetime L0 stalled for: %s\n", "0s")
	l.Warningf("warn %d\n", 1)
	if got := buf.String(); strings.Contains(got, `\n`) {
		t.Errorf("log has a literal \\n: %q", got)
	}
	if strings.Count(buf.String(), "\n") != 2 {
		t.Errorf("want two lines: %q", buf.String())
	}
}

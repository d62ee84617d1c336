package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/internal/audit"
)

// errChainBroken makes `tern audit verify` exit 1 once it printed where.
var errChainBroken = errors.New("audit: chain broken")

// auditCommand is `tern audit verify [FILE…]`: it checks the hash chain of
// the given audit files, in order, or of the data dir's audit directory.
type auditCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	files          []string
}

func (c *auditCommand) Parse(args []string) error {
	fs := newFlagSet("audit", c.stderr)
	c.common.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || pos[0] != "verify" {
		return errors.New("audit: want verify [FILE…] [--data DIR]")
	}
	c.files = pos[1:]
	return nil
}

func (c *auditCommand) Run(context.Context) error {
	files, whole := c.files, len(c.files) == 0
	if whole {
		cfg, err := c.common.load()
		if err != nil {
			return err
		}
		dir := broker.AuditOptions(cfg, slog.Default()).Dir
		if files, err = audit.Files(dir); err != nil {
			return fmt.Errorf("audit dir: %w", err)
		}
		if len(files) == 0 {
			return fmt.Errorf("audit: no audit files in %s", dir)
		}
	}
	r, err := audit.Verify(files, whole)
	if b := (*audit.Break)(nil); errors.As(err, &b) {
		fmt.Fprintf(c.stdout, "BROKEN %s:%d: %s\n", b.File, b.Line, b.Reason)
		return errChainBroken
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "OK %d lines in %d files; last line hash %s\n", r.Lines, len(files), r.Head)
	if !whole && r.Anchor != audit.Genesis {
		fmt.Fprintf(c.stdout, "(the first line links to an earlier line %s not given)\n", r.Anchor)
	}
	return nil
}

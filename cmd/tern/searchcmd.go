package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/internal/search"
)

// searchCommand is `tern search reindex`: it rebuilds a stopped broker's
// search index ({data}/search) from its store. Interrupted (Ctrl-C), it
// keeps what it indexed and the next run resumes from there.
type searchCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
}

func (c *searchCommand) Parse(args []string) error {
	fs := newFlagSet("search", c.stderr)
	c.common.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "reindex" {
		return errors.New("search: want reindex [--data DIR]")
	}
	return nil
}

func (c *searchCommand) Run(ctx context.Context) (err error) {
	cfg, err := c.common.load()
	if err != nil {
		return err
	}
	st, err := openStore(cfg, c.stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	defer func() { err = errors.Join(err, st.Close()) }()
	dir := broker.SearchDir(cfg.Data)
	n, err := search.Reindex(ctx, dir, broker.SearchOptions(cfg, st, log))
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("search reindex interrupted after %d events; run it again to resume", n)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d events read, index rebuilt in %s\n", n, dir)
	return nil
}

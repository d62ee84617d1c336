package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/internal/compliance"
)

// retentionCommand is `tern retention set CV DURATION` and
// `tern retention get CV`.
type retentionCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	server         string
	verb           string
	args           []string
}

func (c *retentionCommand) Parse(args []string) error {
	fs := newFlagSet("retention", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "running broker's HTTP `URL` (admin API)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		c.verb, c.args = pos[0], pos[1:]
	}
	switch {
	case c.verb == "set" && len(c.args) == 2:
		if err := compliance.CheckConv(c.args[0]); err != nil {
			return err
		}
		_, err := compliance.ParseRetention(c.args[1])
		return err
	case c.verb == "get" && len(c.args) == 1:
		return compliance.CheckConv(c.args[0])
	}
	return errors.New("retention: want set CV DURATION (720h, 30d, 0 for the server default) or get CV")
}

func (c *retentionCommand) Run(ctx context.Context) (err error) {
	be, err := openBackend(&c.common, c.server, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, be.Close()) }()
	var r adminapi.RetentionBody
	if c.verb == "set" {
		r, err = be.SetRetention(ctx, c.args[0], c.args[1])
	} else {
		r, err = be.Retention(ctx, c.args[0])
	}
	if err != nil {
		return fmt.Errorf("retention %s: %w", c.verb, err)
	}
	if r.Seconds == 0 {
		fmt.Fprintf(c.stdout, "%s\tserver default (im.retention)\n", r.CV)
	} else {
		fmt.Fprintf(c.stdout, "%s\t%s\n", r.CV, r.Retention)
	}
	return nil
}

// holdCommand is `tern hold add (--user UID | --cv CV) [--reason TEXT]`,
// `tern hold list` and `tern hold remove ID`.
type holdCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	server         string
	req            adminapi.HoldRequest
	verb           string
	args           []string
}

func (c *holdCommand) Parse(args []string) error {
	fs := newFlagSet("hold", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "running broker's HTTP `URL` (admin API)")
	fs.StringVar(&c.req.UID, "user", "", "with add: hold this user's DMs and what they wrote (`uid`)")
	fs.StringVar(&c.req.CV, "cv", "", "with add: hold this conversation (`cv`: d:a:b or g:gid)")
	fs.StringVar(&c.req.Reason, "reason", "", "with add: why (a case number; at most 1024 bytes)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		c.verb, c.args = pos[0], pos[1:]
	}
	switch {
	case c.verb == "add" && len(c.args) == 0:
		if (c.req.UID == "") == (c.req.CV == "") {
			return errors.New("hold add: want exactly one of --user UID and --cv CV")
		}
		return nil
	case c.verb == "list" && len(c.args) == 0, c.verb == "remove" && len(c.args) == 1:
		if c.req != (adminapi.HoldRequest{}) {
			return errors.New("hold: --user, --cv and --reason go with add")
		}
		return nil
	}
	return errors.New("hold: want add (--user UID | --cv CV) [--reason TEXT], list, or remove ID")
}

func (c *holdCommand) Run(ctx context.Context) (err error) {
	be, err := openBackend(&c.common, c.server, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, be.Close()) }()
	switch c.verb {
	case "add":
		h, err := be.AddHold(ctx, c.req)
		if err != nil {
			return fmt.Errorf("hold add: %w", err)
		}
		fmt.Fprintln(c.stdout, h.ID)
	case "remove":
		if _, err := be.RemoveHold(ctx, c.args[0]); err != nil {
			return fmt.Errorf("hold remove: %w", err)
		}
		fmt.Fprintf(c.stderr, "hold %s removed\n", c.args[0])
	case "list":
		hs, err := be.Holds(ctx)
		if err != nil {
			return fmt.Errorf("hold list: %w", err)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tON\tBY\tCREATED\tREASON")
		for _, h := range hs {
			on := h.CV
			if h.UID != "" {
				on = "user " + h.UID
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.ID, on, h.By, time.UnixMilli(h.Created).UTC().Format("2006-01-02 15:04:05Z"), h.Reason)
		}
		return tw.Flush()
	}
	return nil
}

// exportCommand is `tern export [--user UID] [--cv CV] [--since T]
// [--until T] [--out FILE]`: JSON Lines and a manifest, to stdout or to
// FILE (written beside it and renamed once complete and verified, so an
// interrupted export leaves nothing half-written and can be run again).
type exportCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	server         string
	q              url.Values
	out, files     string
}

func (c *exportCommand) Parse(args []string) error {
	fs := newFlagSet("export", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "running broker's HTTP `URL` (admin API)")
	var user, cv, since, until string
	fs.StringVar(&user, "user", "", "the conversations of this `uid` (DMs; groups within the membership)")
	fs.StringVar(&cv, "cv", "", "one conversation (`cv`)")
	fs.StringVar(&since, "since", "", "events at or after `T` (RFC 3339, 2026-01-02 or Unix ms)")
	fs.StringVar(&until, "until", "", "events before `T`")
	fs.StringVar(&c.out, "out", "", "write to `FILE` instead of stdout")
	fs.StringVar(&c.files, "files", "", "also write the files the exported messages attach into this tar `FILE` (files/{fid} and files.jsonl)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errors.New("export: takes flags only: [--user UID] [--cv CV] [--since T] [--until T] [--out FILE]")
	}
	c.q = url.Values{}
	for k, v := range map[string]string{"user": user, "cv": cv, "since": since, "until": until} {
		if v != "" {
			c.q.Set(k, v)
		}
	}
	return nil
}

func (c *exportCommand) Run(ctx context.Context) (err error) {
	be, err := openBackend(&c.common, c.server, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, be.Close()) }()
	if err := c.exportEvents(ctx, be); err != nil {
		return err
	}
	if c.files == "" {
		return nil
	}
	return writeAtomically(c.files, func(w io.Writer) error { return be.ExportFiles(ctx, c.q, w) }, func(f *os.File) error {
		fmt.Fprintf(c.stderr, "files written to %s\n", c.files)
		return nil
	})
}

// exportEvents writes the events and the manifest to stdout or --out.
func (c *exportCommand) exportEvents(ctx context.Context, be backend) error {
	if c.out == "" {
		// Checked as it streams: an export cut short (the server failed
		// midway) ends without its manifest, and the command says so.
		v := compliance.NewVerifier()
		if err := be.Export(ctx, c.q, io.MultiWriter(c.stdout, v)); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if _, err := v.Result(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		return nil
	}
	return writeAtomically(c.out, func(w io.Writer) error { return be.Export(ctx, c.q, w) }, func(f *os.File) error {
		m, err := compliance.VerifyExport(f)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "exported %d events to %s (sha256 %s)\n", m.Count, c.out, m.SHA256)
		return nil
	})
}

// writeAtomically writes path through a temporary file beside it: fill
// writes, check reads it back from the start, and only then is it
// renamed into place; on any error the temporary file is removed.
func writeAtomically(path string, fill func(io.Writer) error, check func(*os.File) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			_ = os.Remove(tmp.Name()) // the export error is the one to report
		}
	}()
	if err := fill(tmp); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := check(tmp); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

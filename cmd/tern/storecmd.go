package main

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// errProblems is returned by `tern store check` without --repair when it
// found unreadable records: the exit code is then non-zero.
var errProblems = errors.New("store check: unreadable records found (run again with --repair to quarantine them)")

// storeCommand is `tern store check [--repair]`: it scans every stored
// event record of a stopped broker's data dir and reports (with --repair,
// quarantines) those that do not decode with the read limits.
type storeCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	repair         bool
}

func (c *storeCommand) Parse(args []string) error {
	fs := newFlagSet("store", c.stderr)
	c.common.register(fs)
	fs.BoolVar(&c.repair, "repair", false, "move unreadable records to the quarantine prefix (kept, not deleted)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "check" {
		return errors.New("store: want check [--repair] [--data DIR]")
	}
	return nil
}

func (c *storeCommand) Run(ctx context.Context) (err error) {
	cfg, err := c.common.load()
	if err != nil {
		return err
	}
	st, err := openStore(cfg, c.stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	r, err := st.Check(c.repair)
	if err != nil {
		return err
	}
	for _, p := range r.Problems {
		fmt.Fprintf(c.stdout, "unreadable\t%s\t%s\n", p.Key, p.Reason)
	}
	fmt.Fprintf(c.stdout, "%d event records scanned, %d unreadable", r.Scanned, len(r.Problems))
	if c.repair {
		fmt.Fprintf(c.stdout, ", %d quarantined", r.Quarantined)
	}
	fmt.Fprintln(c.stdout)
	if len(r.Problems) > 0 && !c.repair {
		return errProblems
	}
	return nil
}

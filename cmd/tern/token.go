package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
)

// tokenCommand is `tern token create|list|revoke`.
type tokenCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	server         string
	id             string
	verb           string
	args           []string
}

func (c *tokenCommand) Parse(args []string) error {
	fs := newFlagSet("token", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "running broker's HTTP `URL` (admin API)")
	fs.StringVar(&c.id, "id", "", "with revoke: revoke only the token with this `id`")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("token: want create, list or revoke")
	}
	c.verb, c.args = pos[0], pos[1:]
	switch {
	case c.verb == "create" && len(c.args) == 2:
	case c.verb == "list" && len(c.args) == 1:
	case c.verb == "revoke" && (len(c.args) == 1 || len(c.args) == 2):
	case c.verb == "create":
		return errors.New("token create: want UID DID")
	case c.verb == "list":
		return errors.New("token list: want UID")
	case c.verb == "revoke":
		return errors.New("token revoke: want UID [DID] [--id ID]")
	default:
		return fmt.Errorf("token: unknown verb %q", c.verb)
	}
	return nil
}

func (c *tokenCommand) Run(ctx context.Context) (err error) {
	be, err := openBackend(&c.common, c.server, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, be.Close()) }()
	uid := c.args[0]
	switch c.verb {
	case "create":
		t, err := be.CreateToken(ctx, uid, c.args[1])
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		// The secret is shown once, alone on stdout, for scripts.
		fmt.Fprintln(c.stdout, t.Secret)
		fmt.Fprintf(c.stderr, "token %s for %s.%s created; it is not shown again\n", t.ID, t.UID, t.DID)
	case "list":
		ts, err := be.Tokens(ctx, uid)
		if err != nil {
			return fmt.Errorf("token list: %w", err)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDEVICE\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.DID, t.Created.Format("2006-01-02 15:04:05Z"))
		}
		return tw.Flush()
	case "revoke":
		did := ""
		if len(c.args) == 2 {
			did = c.args[1]
		}
		n, err := be.RevokeTokens(ctx, uid, did, c.id)
		if err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		if n == 0 {
			return errors.New("token revoke: no matching token")
		}
		fmt.Fprintf(c.stderr, "%d token(s) revoked\n", n)
	}
	return nil
}

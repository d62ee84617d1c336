package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// adminCommand is `tern admin clients|kick|stats|notice`, against a
// running broker's admin API.
type adminCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	server         string
	verb           string
	args           []string
	cluster        bool
}

func (c *adminCommand) Parse(args []string) error {
	fs := newFlagSet("admin", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "running broker's HTTP `URL` (default: http://127.0.0.1 on the config's http.addr port)")
	fs.BoolVar(&c.cluster, "cluster", false, "clients, stats: every node of the cluster, not only the one asked")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("admin: want clients, kick, stats or notice")
	}
	c.verb, c.args = pos[0], pos[1:]
	switch {
	case (c.verb == "clients" || c.verb == "stats") && len(c.args) == 0:
	case c.verb == "kick" && len(c.args) == 1:
	case c.verb == "notice" && len(c.args) >= 1:
	case c.verb == "kick":
		return errors.New("admin kick: want UID.DID")
	case c.verb == "notice":
		return errors.New("admin notice: want TEXT")
	case c.verb == "clients" || c.verb == "stats":
		return fmt.Errorf("admin %s: takes no arguments", c.verb)
	default:
		return fmt.Errorf("admin: unknown verb %q", c.verb)
	}
	return nil
}

func (c *adminCommand) Run(ctx context.Context) error {
	cfg, err := c.common.load()
	if err != nil {
		return err
	}
	api, err := localAdmin(cfg, c.server, "admin")
	if err != nil {
		return err
	}
	switch c.verb {
	case "clients":
		list := api.Clients
		if c.cluster {
			list = api.ClusterClients
		}
		cs, err := list(ctx)
		if err != nil {
			return fmt.Errorf("admin clients: %w", err)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		if c.cluster {
			fmt.Fprintln(tw, "NODE\tCLIENT\tADDR\tPROTO\tLISTENER\tSINCE")
		} else {
			fmt.Fprintln(tw, "CLIENT\tADDR\tPROTO\tLISTENER\tSINCE")
		}
		for _, cl := range cs {
			if c.cluster {
				fmt.Fprintf(tw, "%s\t", cl.Node)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cl.ClientID, cl.Addr, cl.Proto, cl.Listener, cl.Since.Format("2006-01-02 15:04:05Z"))
		}
		return tw.Flush()
	case "kick":
		n, err := api.Kick(ctx, c.args[0])
		if err != nil {
			return fmt.Errorf("admin kick %s: %w", c.args[0], err)
		}
		fmt.Fprintf(c.stderr, "admin kick: %s: %d connection(s) closed\n", c.args[0], n)
		return nil
	case "stats":
		var st any
		if c.cluster {
			st, err = api.ClusterStats(ctx)
		} else {
			st, err = api.Stats(ctx)
		}
		if err != nil {
			return fmt.Errorf("admin stats: %w", err)
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "notice":
		n, err := api.Notice(ctx, strings.Join(c.args, " "))
		if err != nil {
			return fmt.Errorf("admin notice: %w", err)
		}
		fmt.Fprintf(c.stderr, "admin notice: retained on im/sys/notice (ts %d)\n", n.TS)
		return nil
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// clusterCommand is `tern cluster status`: a running cluster node's view
// of the nodes and JetStream assets, through its admin API.
type clusterCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	server         string
}

func (c *clusterCommand) Parse(args []string) error {
	fs := newFlagSet("cluster", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "a running node's HTTP `URL` (default: http://127.0.0.1 on the config's http.addr port)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "status" {
		return errors.New("cluster: want status")
	}
	return nil
}

func (c *clusterCommand) Run(ctx context.Context) error {
	cfg, err := c.common.load()
	if err != nil {
		return err
	}
	api, err := localAdmin(cfg, c.server, "cluster")
	if err != nil {
		return err
	}
	st, err := api.Cluster(ctx)
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	fmt.Fprintf(c.stdout, "cluster %s, asked node %s; nodes: %s\n\n", st.Cluster, st.Node, strings.Join(st.Nodes, " "))
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tLEADER\tREPLICAS (lag, last heard)\tMSGS\tBYTES")
	for _, s := range st.Streams {
		var reps []string
		for _, r := range s.Replicas {
			state := fmt.Sprintf("%s (%d, %dms)", r.Name, r.Lag, r.ActiveMS)
			if r.Offline {
				state = r.Name + " (offline)"
			} else if !r.Current {
				state += " behind"
			}
			reps = append(reps, state)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", s.Name, s.Leader, strings.Join(reps, ", "), s.Msgs, s.Bytes)
	}
	return tw.Flush()
}

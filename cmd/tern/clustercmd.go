package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/jetstore"
)

// clusterCommand is `tern cluster status`: a running cluster node's view
// of the nodes and JetStream assets, through its admin API; and `tern
// cluster init`: create the assets in an existing NATS cluster.
type clusterCommand struct {
	stdout, stderr io.Writer
	common         commonFlags
	server         string
	verb           string
	natsURL        string
	replicas       int
}

func (c *clusterCommand) Parse(args []string) error {
	fs := newFlagSet("cluster", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "status: a running node's HTTP `URL` (default: http://127.0.0.1 on the config's http.addr port)")
	fs.StringVar(&c.natsURL, "nats-url", "", "init: the NATS cluster's `URL`s (default: the config's cluster.nats_url; env TERN_NATS_URL)")
	fs.IntVar(&c.replicas, "replicas", 0, "init: replicas of each stream (default: the config's cluster.replicas)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "status" && pos[0] != "init" {
		return errors.New("cluster: want status or init")
	}
	c.verb = pos[0]
	if c.replicas < 0 || c.replicas > 5 {
		return errors.New("cluster init: --replicas must be 1 to 5")
	}
	return nil
}

func (c *clusterCommand) Run(ctx context.Context) error {
	cfg, err := c.common.load()
	if err != nil {
		return err
	}
	if c.verb == "init" {
		return c.init(ctx, cfg.Cluster)
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

// init creates the log stream and the KV buckets in the NATS cluster at
// --nats-url, idempotently, and prints each with what it did.
func (c *clusterCommand) init(ctx context.Context, cc config.Cluster) error {
	url, replicas := cmp.Or(c.natsURL, cc.NATSURL), cmp.Or(c.replicas, cc.Replicas)
	if url == "" {
		return errors.New("cluster init: --nats-url (or cluster.nats_url) is required")
	}
	nc, err := nats.Connect(url, nats.Name("tern-cluster-init"), nats.Timeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("cluster init: connect %s: %w", url, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	assets, err := jetstore.Init(ctx, nc, replicas)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tKIND\tREPLICAS\tSTATE")
	for _, a := range assets {
		state := "exists"
		if a.Created {
			state = "created"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", a.Stream, a.Kind, a.Replicas, state)
	}
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("cluster init: %w", err)
	}
	return nil
}

// Command firmware-sim provisions simulated users and drives simulated
// devices against a Tern broker (or, in raw mode, any MQTT broker).
//
//	firmware-sim provision --server URL --users N [--groups G --group-size K]
//	firmware-sim run --mqtt HOST:PORT --scenario dm|group|presence|mixed|idle|file …
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	firmwaresim "github.com/tern-im/tern/firmware-sim"
)

const usage = `firmware-sim: simulated Tern devices, for sizing and regression runs.

Usage:
  firmware-sim provision --server URL --users N [--groups G --group-size K] [--out FILE]
  firmware-sim run --mqtt HOST:PORT --scenario dm|group|presence|mixed|idle|file [flags]
  firmware-sim help

provision creates users, device tokens and groups through the admin API and
saves the credentials to a devices file; re-running it is safe.
run drives the devices of that file (or, with --raw, plain MQTT clients) and
reports delivered msgs/s, latency percentiles, lost, duplicated and
out-of-order counts, reconnects and sync catch-up time.
Run "firmware-sim COMMAND --help" for a command's flags.
`

// command is a subcommand: parse its arguments, then Run.
type command interface {
	Parse(args []string) error
	Run(ctx context.Context) error
}

var errHelp = errors.New("help shown")

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errHelp) {
			fmt.Fprintln(os.Stderr, "firmware-sim:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return errHelp
		}
		return nil
	}
	var cmd command
	switch args[0] {
	case "provision":
		cmd = &provisionCommand{stdout: stdout, stderr: stderr}
	case "run":
		cmd = &runCommand{stdout: stdout, stderr: stderr}
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err := cmd.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.Run(ctx)
}

func newFlagSet(name, synopsis string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: firmware-sim %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

type provisionCommand struct {
	stdout, stderr io.Writer
	o              firmwaresim.ProvisionOptions
}

func (c *provisionCommand) Parse(args []string) error {
	fs := newFlagSet("provision", "provision --server URL --users N [flags]", c.stderr)
	fs.StringVar(&c.o.Server, "server", "http://127.0.0.1:8080", "admin API base `URL` of the broker")
	fs.StringVar(&c.o.AdminToken, "admin-token", os.Getenv("TERN_ADMIN_TOKEN"), "admin API `token` (default $TERN_ADMIN_TOKEN)")
	fs.StringVar(&c.o.MQTT, "mqtt", "127.0.0.1:1883", "MQTT `host:port`, for group.create as the group owner (empty: no groups)")
	fs.StringVar(&c.o.Prefix, "prefix", "sim", "user id `prefix`: users are PREFIX00001…")
	fs.IntVar(&c.o.Users, "users", 100, "number of users")
	fs.IntVar(&c.o.DevicesPerUser, "devices-per-user", 1, "devices (tokens) per user")
	fs.IntVar(&c.o.Groups, "groups", 0, "number of groups")
	fs.IntVar(&c.o.GroupSize, "group-size", 10, "members per group, owner included")
	fs.StringVar(&c.o.Out, "out", "devices.json", "devices `file` to read and (re)write")
	fs.IntVar(&c.o.Workers, "workers", 4, "parallel admin API requests")
	if err := parse(fs, args); err != nil {
		return err
	}
	if c.o.AdminToken == "" {
		return errors.New("provision: --admin-token or TERN_ADMIN_TOKEN is required")
	}
	if c.o.Users < 1 {
		return errors.New("provision: --users must be at least 1")
	}
	return nil
}

func (c *provisionCommand) Run(ctx context.Context) error {
	c.o.Log = func(format string, args ...any) { fmt.Fprintf(c.stderr, format+"\n", args...) }
	f, res, err := firmwaresim.Provision(ctx, c.o)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: %d users (%d created, %d existing), %d devices, %d tokens created, groups %d created, %d existing, %d skipped\n",
		c.o.Out, len(f.Users), res.UsersCreated, res.UsersExisting, len(f.Devices()), res.TokensCreated,
		res.GroupsCreated, res.GroupsKept, res.GroupsSkipped)
	if res.Warning != "" {
		fmt.Fprintln(c.stderr, "firmware-sim: warning:", res.Warning)
	}
	return nil
}

type runCommand struct {
	stdout, stderr io.Writer
	o              firmwaresim.RunOptions
	server         string
	devicesFile    string
	encoding       string
	qos            int
	sourceIPs      string
	jsonOut        bool
	progress       bool
	cpuProfile     string
	fileSize       int
	maxPkt         int
}

func (c *runCommand) Parse(args []string) error {
	fs := newFlagSet("run", "run --mqtt HOST:PORT --scenario S [flags]", c.stderr)
	o := &c.o
	fs.StringVar(&c.server, "server", "", "broker HTTP base `URL` (for /metrics RSS in the idle scenario)")
	fs.StringVar(&o.MQTT, "mqtt", "127.0.0.1:1883", "MQTT `host:port` of the broker; a comma-separated list (a cluster's nodes) spreads the devices over them in turn")
	fs.StringVar(&c.devicesFile, "devices-file", "devices.json", "devices `file` written by provision (IM mode)")
	fs.StringVar(&o.Scenario, "scenario", "dm", "dm, group, presence, mixed, idle or file")
	fs.IntVar(&c.fileSize, "file-size", 256<<10, "file scenario: `bytes` each device uploads")
	fs.IntVar(&c.maxPkt, "max-pkt", 0, "file scenario: the devices' packet size in `bytes` (sets the chunk size; 0 = the broker's)")
	fs.IntVar(&o.Devices, "devices", 100, "number of devices")
	fs.Float64Var(&o.Rate, "rate", 100, "total messages per second over all devices; 0 = closed loop (each keeps --window in flight)")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "load phase length")
	fs.DurationVar(&o.Drain, "drain", 30*time.Second, "longest wait for every message after the load phase")
	fs.IntVar(&c.qos, "qos", 1, "QoS of messages and subscriptions: 0 or 1")
	fs.IntVar(&o.Payload, "payload", 64, "message body `bytes`")
	fs.StringVar(&c.encoding, "encoding", "json", "device encoding negotiated in hello: json or cbor")
	fs.BoolVar(&o.Replay, "replay", false, "fresh devices sync their user's whole stream from 0 (default: start at us_head from hello)")
	fs.BoolVar(&o.Clean, "clean", true, "clean session at every connect (catch-up comes from sync)")
	fs.IntVar(&o.Window, "window", 32, "unconfirmed messages in flight per device")
	fs.IntVar(&o.Senders, "senders", 0, "only the first `N` devices send (e.g. 1 for a one-sender group fan-out); 0 = all")
	fs.Float64Var(&o.Link.Drop, "drop", 0, "chance per second that a device's link drops (0..1)")
	fs.DurationVar(&o.Link.Outage, "outage", 0, "how long a dropped link refuses to reconnect")
	fs.DurationVar(&o.Link.Latency, "latency", 0, "added one-way link latency")
	fs.DurationVar(&o.Link.Jitter, "jitter", 0, "added random latency 0..jitter")
	fs.IntVar(&o.Link.Bandwidth, "bandwidth", 0, "link bandwidth cap per direction in `bytes/s` (0 = none)")
	fs.DurationVar(&o.StormAt, "storm-at", 0, "reconnect storm: cut every link at once at this offset into the load phase")
	fs.BoolVar(&o.Raw, "raw", false, "plain MQTT without the IM protocol: dm = pairs, group = fan-out, idle = subscribers")
	fs.StringVar(&o.RawUser, "user", "", "raw mode username (empty: anonymous)")
	fs.StringVar(&o.RawPass, "pass", "", "raw mode password")
	fs.IntVar(&o.GroupSize, "group-size", 10, "raw fan-out group size")
	fs.StringVar(&c.sourceIPs, "source-ips", "", "spread dials over loopback source `addresses`, e.g. 127.0.0.2-127.0.0.20")
	fs.IntVar(&o.ConnectConcurrency, "connect-concurrency", 256, "simultaneous initial connects")
	fs.DurationVar(&o.RPCTimeout, "rpc-timeout", 5*time.Second, "RPC reply timeout (hello unanswered = no messaging)")
	fs.IntVar(&o.BrokerPID, "broker-pid", 0, "broker `pid` for RSS per connection (idle scenario)")
	fs.StringVar(&o.MetricsURL, "metrics", "", "Prometheus `URL` for RSS per connection (default SERVER/metrics when --server is set)")
	fs.BoolVar(&c.jsonOut, "json", false, "print the final report as one JSON object on stdout")
	fs.BoolVar(&c.progress, "progress", false, "print a progress line every second even when stderr is not a terminal")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the simulator's own CPU profile to `file` (to tell its cost from the broker's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch c.encoding {
	case "json":
	case "cbor":
		o.CBOR = true
	default:
		return fmt.Errorf("run: --encoding %q is not json or cbor", c.encoding)
	}
	if c.qos != 0 && c.qos != 1 {
		return fmt.Errorf("run: --qos %d is not 0 or 1", c.qos)
	}
	o.QoS = byte(c.qos)
	ips, err := firmwaresim.ParseSourceIPs(c.sourceIPs)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	o.SourceIPs = ips
	if o.MetricsURL == "" && c.server != "" && o.BrokerPID == 0 {
		o.MetricsURL = strings.TrimRight(c.server, "/") + "/metrics"
	}
	return nil
}

func (c *runCommand) Run(ctx context.Context) error {
	if _, err := firmwaresim.RaiseFDLimit(uint64(4*c.o.Devices + 1024)); err != nil {
		return fmt.Errorf("raise fd limit: %w", err)
	}
	if !c.o.Raw {
		f, err := firmwaresim.LoadFleet(c.devicesFile)
		if err != nil {
			return fmt.Errorf("devices file (run provision first): %w", err)
		}
		c.o.Fleet = f
	}
	tty := false
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		tty = true
	}
	if tty || c.progress {
		c.o.Progress = func(r *firmwaresim.Report) {
			if tty {
				fmt.Fprintf(c.stderr, "\r\033[K%s", r.Line())
			} else {
				fmt.Fprintln(c.stderr, r.Line())
			}
		}
	}
	if c.o.Scenario == firmwaresim.ScenarioFile {
		return c.runFiles(ctx)
	}
	r, err := firmwaresim.NewRunner(c.o)
	if err != nil {
		return err
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := r.Run(ctx)
	if tty {
		fmt.Fprintln(c.stderr)
	}
	if err != nil {
		return err
	}
	if c.jsonOut {
		return json.NewEncoder(c.stdout).Encode(rep)
	}
	fmt.Fprint(c.stdout, rep.Text())
	return nil
}

// runFiles runs the file scenario: --duration bounds the whole run.
func (c *runCommand) runFiles(ctx context.Context) error {
	rep, err := firmwaresim.RunFiles(ctx, firmwaresim.FileOptions{
		MQTT: c.o.MQTT, Fleet: c.o.Fleet, Devices: c.o.Devices, Size: c.fileSize, MaxPkt: c.maxPkt,
		Link: c.o.Link, Deadline: c.o.Duration, RPCTimeout: c.o.RPCTimeout,
	})
	if err != nil {
		return err
	}
	if c.jsonOut {
		return json.NewEncoder(c.stdout).Encode(rep)
	}
	fmt.Fprint(c.stdout, rep.Text())
	return nil
}

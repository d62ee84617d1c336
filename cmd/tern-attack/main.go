// Command tern-attack runs the hostile clients of Tern's hardening soak
// (docs/security.md, scripts/soak.sh) against a broker on the loopback
// network, side by side with legitimate load from firmware-sim.
//
//	tern-attack --mqtt 127.0.0.1:1883 --attacker atk1:PW --victim sim00001:TOKEN:check --duration 10m
//
// Every attack is bounded in rate, in count and in time, and the tool refuses
// any target outside 127.0.0.0/8. While it attacks, it checks every second
// that each victim can still log in with its device token and that the
// victim's sync and conv.list still answer; the final report (JSON on
// stdout) counts what each attack did and every failed check.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "tern-attack:", err)
		os.Exit(1)
	}
}

// account is a uid with a password (attackers) or a uid, did and device
// token (victims, whose logins are checked).
type account struct {
	UID, Secret, DID string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tern-attack", flag.ContinueOnError)
	var (
		o         options
		attackers listFlag
		victims   listFlag
		only      string
	)
	fs.StringVar(&o.MQTT, "mqtt", "127.0.0.1:1883", "broker MQTT `host:port` (loopback only)")
	fs.Var(&attackers, "attacker", "attacker account `uid:password` (repeat; at least 3)")
	fs.Var(&victims, "victim", "victim `uid:token:did` whose token logins are checked (repeat)")
	fs.DurationVar(&o.Duration, "duration", time.Minute, "how long to attack")
	fs.StringVar(&only, "attacks", strings.Join(attackNames(), ","), "comma-separated `attacks` to run")
	fs.IntVar(&o.FloodConns, "flood-conns", 3000, "half-open TCP connections the flood holds")
	fs.StringVar(&o.FloodFrom, "flood-from", "127.0.0.66", "source `address` of the flood")
	from := fs.String("from", "127.0.0.67", "first source `address` of the other attacks (one address each, counting up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(o.MQTT)
	if err != nil {
		return fmt.Errorf("--mqtt: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--mqtt %s: only loopback targets are allowed", o.MQTT)
	}
	if o.From = net.ParseIP(*from); o.From == nil || !o.From.IsLoopback() {
		return fmt.Errorf("--from %q: want a loopback address", *from)
	}
	for _, a := range attackers {
		uid, pw, ok := strings.Cut(a, ":")
		if !ok {
			return fmt.Errorf("--attacker %q: want uid:password", a)
		}
		o.Attackers = append(o.Attackers, account{UID: uid, Secret: pw})
	}
	for _, v := range victims {
		p := strings.SplitN(v, ":", 3)
		if len(p) != 3 {
			return fmt.Errorf("--victim %q: want uid:token:did", v)
		}
		o.Victims = append(o.Victims, account{UID: p[0], Secret: p[1], DID: p[2]})
	}
	if len(o.Attackers) < 3 {
		return errors.New("need at least 3 --attacker accounts")
	}
	if len(o.Victims) == 0 {
		return errors.New("need at least one --victim")
	}
	selected := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if _, ok := attacks[n]; !ok {
			return fmt.Errorf("--attacks: unknown attack %q (have %s)", n, strings.Join(attackNames(), ", "))
		}
		selected[n] = true
	}

	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	rep := &report{Attacks: map[string]*counts{}}
	var wg sync.WaitGroup
	for k, n := range attackNames() {
		if !selected[n] {
			continue
		}
		c := &counts{}
		rep.Attacks[n] = c
		// Each attack dials from its own address, so one attack's
		// per-address throttling does not hide another's effect.
		ao := o
		ao.From = slices.Clone(o.From.To4())
		ao.From[3] += byte(k)
		wg.Go(func() { attacks[n](ctx, &ao, c) })
	}
	wg.Go(func() { checkVictims(ctx, &o, rep) })
	wg.Wait()
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

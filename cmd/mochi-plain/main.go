// Command mochi-plain runs a plain mochi-mqtt v2 broker with default
// options, no persistence and auth.AllowHook: the baseline Tern is
// measured against (scripts/compare.sh).
//
//	mochi-plain [--addr 127.0.0.1:1884]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mochi-plain:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mochi-plain", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1884", "MQTT listen `address`")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: log})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return err
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Serve(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mochi-plain listening on %s (pid %d)\n", *addr, os.Getpid())
	<-ctx.Done()
	return s.Close()
}

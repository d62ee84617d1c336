// Command tern runs the Tern broker and manages its accounts.
//
//	tern serve [-c FILE] [--data DIR] [--mqtt-addr A] [--ws-addr A] [--http-addr A]
//	tern user add|passwd|disable|enable|del|list …
//	tern token create|list|revoke …
//	tern chat --mqtt HOST:PORT --user UID [--device DID]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `Tern: an MQTT broker that is an IM server.

Usage:
  tern serve [-c FILE] [--data DIR] [--mqtt-addr ADDR] [--ws-addr ADDR] [--http-addr ADDR]
  tern user add UID (--password PW | --password-stdin) [--admin]
  tern user passwd UID [--password PW | --password-stdin]
  tern user disable|enable|del UID
  tern user list
  tern token create UID DID
  tern token list UID
  tern token revoke UID [DID] [--id ID]
  tern chat [--mqtt HOST:PORT] --user UID [--device DID]   (secret: TERN_TOKEN or a prompt)
  tern version

user and token commands work on a stopped broker's data dir (--data DIR, or
-c FILE) or on a running broker through its admin API (--server URL, with the
admin token from -c FILE, TERN_ADMIN_TOKEN or DIR/admin.token).
Run "tern COMMAND -h" for a command's flags.
`

// command is a subcommand: parse its arguments, then Run.
type command interface {
	Parse(args []string) error
	Run(ctx context.Context) error
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errHelp) {
			fmt.Fprintln(os.Stderr, "tern:", err)
		}
		os.Exit(1)
	}
}

var errHelp = errors.New("help shown")

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return errHelp
		}
		return nil
	}
	var cmd command
	switch args[0] {
	case "serve":
		cmd = &serveCommand{stderr: stderr}
	case "user":
		cmd = &userCommand{stdin: stdin, stdout: stdout, stderr: stderr}
	case "token":
		cmd = &tokenCommand{stdout: stdout, stderr: stderr}
	case "chat":
		cmd = &chatCommand{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	case "version":
		fmt.Fprintln(stdout, "tern", version)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err := cmd.Parse(args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.Run(ctx)
}

// newLogger builds the root logger; level is changeable at runtime through
// the returned LevelVar.
func newLogger(w io.Writer, level string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	switch level {
	case "debug":
		lv.Set(slog.LevelDebug)
	case "warn":
		lv.Set(slog.LevelWarn)
	case "error":
		lv.Set(slog.LevelError)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), lv
}

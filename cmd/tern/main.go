// Command tern runs the Tern broker and manages its accounts.
//
//	tern serve [-c FILE] [--data DIR] [--mqtt-addr A] [--ws-addr A] [--http-addr A] [--log-level L] [--log-format F]
//	tern user add|passwd|disable|enable|del|list …
//	tern token create|list|revoke …
//	tern store check [--repair]
//	tern search reindex
//	tern admin clients|kick|stats|notice …
//	tern audit verify [FILE…]
//	tern retention set|get …, tern hold add|list|remove …, tern export …
//	tern chat --mqtt HOST:PORT --user UID [--device DID]
//	tern version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tern-im/tern/internal/buildinfo"
	"github.com/tern-im/tern/internal/searchproc"
)

const usage = `Tern: an MQTT broker that is an IM server.

Usage:
  tern serve [-c FILE] [--data DIR] [--mqtt-addr ADDR] [--ws-addr ADDR] [--http-addr ADDR]
             [--log-level LEVEL] [--log-format text|json]
             [--cluster NAME --node ID (--nats-listen HOST:PORT --nats-routes URL[,URL…] | --nats-url URL)]
  tern user add UID [--password PW | --password-stdin] [--admin]
  tern user passwd UID [--password PW | --password-stdin]
  tern user disable|enable|del UID
  tern user list
  tern user totp enable|disable UID     (two-factor login: prints an otpauth:// URI and QR code)
  tern token create UID DID
  tern token list UID
  tern token revoke UID [DID] [--id ID]
  tern store check [--repair] [--data DIR]
  tern search reindex [--data DIR]
  tern admin clients|stats [--server URL] [--cluster]
  tern admin kick UID.DID [--server URL]
  tern admin notice TEXT [--server URL]
  tern cluster status [--server URL]
  tern cluster init [--nats-url URL] [--replicas N]   (an existing NATS cluster: create the streams and buckets)
  tern audit verify [FILE…] [--data DIR]
  tern retention set CV DURATION | get CV        (DURATION: 720h, 30d; 0 = im.retention)
  tern hold add (--user UID | --cv CV) [--reason TEXT] | list | remove ID
  tern export [--user UID] [--cv CV] [--since T] [--until T] [--out FILE] [--files FILE.tar]
  tern chat [--mqtt HOST:PORT] --user UID [--device DID]   (secret: TERN_TOKEN or a prompt)
  tern version            (or tern --version)

Flags every command takes:
  -c FILE          YAML config (configs/tern.yaml documents every key)
  --data DIR       data dir (default ./data; env TERN_DATA)
  --server URL     user, token and admin commands: act on a running broker
                   through its admin API, e.g. http://127.0.0.1:8080 (admin
                   commands default to 127.0.0.1 on the config's HTTP port)
  --log-level L    serve: debug, info, warn or error
  --log-format F   serve: text or json

store check scans a stopped broker's stored events and reports unreadable
ones; --repair moves them to a quarantine key prefix. It exits non-zero when
it finds any without --repair.
search reindex rebuilds a stopped broker's search index from its store; run
it again after an interruption to resume.
user, token, retention, hold and export commands work on a stopped broker's data dir (--data DIR, or
-c FILE) or on a running broker through its admin API (--server URL, with the
admin token from -c FILE, TERN_ADMIN_TOKEN or DIR/admin.token). Without
--password or --password-stdin, user add and passwd prompt at a terminal
(twice, without echo) and otherwise read one line of stdin.
Run "tern COMMAND -h" for a command's flags.
`

// command is a subcommand: parse its arguments, then Run.
type command interface {
	Parse(args []string) error
	Run(ctx context.Context) error
}

func main() {
	// Everything tern writes is in the data dir and private: Badger
	// creates its files 0666 less the umask, so this makes them 0600.
	syscall.Umask(0o077)
	if searchproc.IsWorker() {
		// Started by a broker to keep its search index (search.process).
		if err := searchproc.Serve(); err != nil {
			fmt.Fprintln(os.Stderr, "tern search worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errHelp) {
			fmt.Fprintln(os.Stderr, "tern:", err)
		}
		os.Exit(1)
	}
}

var errHelp = errors.New("help shown")

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errHelp
	}
	var cmd command
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, buildinfo.Read())
		return nil
	case "serve":
		cmd = &serveCommand{stderr: stderr}
	case "user":
		uc := &userCommand{stdin: stdin, stdout: stdout, stderr: stderr}
		if f, ok := stdin.(*os.File); ok {
			uc.term = stdinTerminal(f)
		}
		cmd = uc
	case "token":
		cmd = &tokenCommand{stdout: stdout, stderr: stderr}
	case "store":
		cmd = &storeCommand{stdout: stdout, stderr: stderr}
	case "search":
		cmd = &searchCommand{stdout: stdout, stderr: stderr}
	case "admin":
		cmd = &adminCommand{stdout: stdout, stderr: stderr}
	case "cluster":
		cmd = &clusterCommand{stdout: stdout, stderr: stderr}
	case "audit":
		cmd = &auditCommand{stdout: stdout, stderr: stderr}
	case "retention":
		cmd = &retentionCommand{stdout: stdout, stderr: stderr}
	case "hold":
		cmd = &holdCommand{stdout: stdout, stderr: stderr}
	case "export":
		cmd = &exportCommand{stdout: stdout, stderr: stderr}
	case "chat":
		cmd = &chatCommand{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err := cmd.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h: the flag package printed the command's usage
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.Run(ctx)
}

// newLogger builds the root logger in format "text" or "json"; level is
// changeable at runtime through the returned LevelVar.
func newLogger(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	switch level {
	case "debug":
		lv.Set(slog.LevelDebug)
	case "warn":
		lv.Set(slog.LevelWarn)
	case "error":
		lv.Set(slog.LevelError)
	}
	o := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o)), lv
	}
	return slog.New(slog.NewTextHandler(w, o)), lv
}

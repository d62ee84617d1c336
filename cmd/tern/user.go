package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	qrcode "github.com/skip2/go-qrcode"
	"golang.org/x/term"

	"github.com/tern-im/tern/internal/accounts"
)

// terminal is what the password prompt needs from a terminal.
type terminal interface {
	ReadPassword() ([]byte, error) // one line, not echoed
}

// ttyStdin is stdin when it is a terminal.
type ttyStdin int

func (fd ttyStdin) ReadPassword() ([]byte, error) { return term.ReadPassword(int(fd)) }

// stdinTerminal returns stdin as a terminal, or nil when it is not one.
func stdinTerminal(f *os.File) terminal {
	if !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return ttyStdin(f.Fd())
}

// promptPassword asks twice on t (prompts on w) and refuses a mismatch
// or an empty password.
func promptPassword(t terminal, w io.Writer) (string, error) {
	fmt.Fprint(w, "Password: ")
	a, err := t.ReadPassword()
	fmt.Fprintln(w)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if len(a) == 0 {
		return "", errors.New("empty password")
	}
	fmt.Fprint(w, "Reenter password: ")
	b, err := t.ReadPassword()
	fmt.Fprintln(w)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if string(a) != string(b) {
		return "", errors.New("passwords do not match")
	}
	return string(a), nil
}

// userCommand is `tern user add|passwd|disable|enable|del|list`.
type userCommand struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// term is the terminal to prompt on; nil when stdin is not one.
	term          terminal
	common        commonFlags
	server        string
	password      string
	passwordStdin bool
	admin         bool
	verb          string
	uid           string
}

func (c *userCommand) Parse(args []string) error {
	fs := newFlagSet("user", c.stderr)
	c.common.register(fs)
	fs.StringVar(&c.server, "server", "", "running broker's HTTP `URL` (admin API), e.g. http://127.0.0.1:8080")
	fs.StringVar(&c.password, "password", "", "the `password` (prefer --password-stdin: flags show in ps)")
	fs.BoolVar(&c.passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	fs.BoolVar(&c.admin, "admin", false, "with add: give the user the admin role")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("user: want add, passwd, disable, enable, del or list")
	}
	c.verb = pos[0]
	want := 2
	if c.verb == "list" {
		want = 1
	}
	if c.verb == "totp" {
		if len(pos) != 3 || (pos[1] != "enable" && pos[1] != "disable") {
			return errors.New("user totp: want enable UID or disable UID")
		}
		c.verb, pos = "totp "+pos[1], pos[1:]
	}
	switch c.verb {
	case "add", "passwd", "disable", "enable", "del", "list", "totp enable", "totp disable":
	default:
		return fmt.Errorf("user: unknown verb %q", c.verb)
	}
	if len(pos) != want {
		return fmt.Errorf("user %s: want %d argument(s), got %d", c.verb, want-1, len(pos)-1)
	}
	if want == 2 {
		c.uid = pos[1]
	}
	if c.password != "" && c.passwordStdin {
		return errors.New("user: --password and --password-stdin exclude each other")
	}
	return nil
}

// readPassword returns --password, else prompts twice without echo when
// stdin is a terminal (like mosquitto_passwd), else reads one line of
// stdin.
func (c *userCommand) readPassword() (string, error) {
	if c.password != "" {
		return c.password, nil
	}
	if c.term != nil && !c.passwordStdin {
		return promptPassword(c.term, c.stderr)
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password on stdin (give --password-stdin and a line, or run at a terminal to be prompted)")
	}
	return pw, nil
}

func (c *userCommand) Run(ctx context.Context) (err error) {
	var pw string
	if c.verb == "add" || c.verb == "passwd" {
		if pw, err = c.readPassword(); err != nil {
			return err
		}
	}
	be, err := openBackend(&c.common, c.server, c.verb == "add")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, be.Close()) }()
	switch c.verb {
	case "add":
		err = be.AddUser(ctx, c.uid, pw, c.admin)
	case "passwd":
		err = be.SetPassword(ctx, c.uid, pw)
	case "disable":
		err = be.SetDisabled(ctx, c.uid, true)
	case "enable":
		err = be.SetDisabled(ctx, c.uid, false)
	case "del":
		err = be.DeleteUser(ctx, c.uid)
	case "totp enable":
		setup, terr := be.EnableTOTP(ctx, c.uid)
		if terr != nil {
			return fmt.Errorf("user totp enable %s: %w", c.uid, terr)
		}
		return showTOTP(c.stdout, setup)
	case "totp disable":
		err = be.DisableTOTP(ctx, c.uid)
	case "list":
		us, lerr := be.Users(ctx)
		if lerr != nil {
			return lerr
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UID\tROLE\tSTATE\tCREATED")
		for _, u := range us {
			role, state := "user", "enabled"
			if u.Admin {
				role = "admin"
			}
			if u.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.UID, role, state, u.Created.Format("2006-01-02 15:04:05Z"))
		}
		return tw.Flush()
	}
	if err != nil {
		return fmt.Errorf("user %s %s: %w", c.verb, c.uid, err)
	}
	fmt.Fprintf(c.stderr, "user %s: %s ok\n", c.uid, c.verb)
	return nil
}

// showTOTP prints a two-factor setup once: the otpauth:// URI, a QR code
// of it drawn with terminal block characters, and the recovery codes.
func showTOTP(w io.Writer, s accounts.TOTPSetup) error {
	qr, err := qrcode.New(s.URI, qrcode.Medium)
	if err != nil {
		return fmt.Errorf("qr code: %w", err)
	}
	fmt.Fprintf(w, "Two-factor login is on. Scan this with an authenticator app, or enter the secret %s:\n\n", s.Secret)
	fmt.Fprint(w, qr.ToSmallString(false))
	fmt.Fprintf(w, "\n%s\n\nRecovery codes (each works once; shown only now, keep them safe):\n", s.URI)
	for _, c := range s.Recovery {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintln(w, "\nThe password no longer logs devices in over MQTT: devices use tokens (POST /v1/login with otp, or tern token create).")
	return nil
}

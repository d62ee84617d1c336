package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// userCommand is `tern user add|passwd|disable|enable|del|list`.
type userCommand struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	common         commonFlags
	server         string
	password       string
	passwordStdin  bool
	admin          bool
	verb           string
	uid            string
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
	switch c.verb {
	case "add", "passwd", "disable", "enable", "del", "list":
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
	if c.verb == "add" && c.password == "" && !c.passwordStdin {
		return errors.New("user add: give --password-stdin or --password")
	}
	return nil
}

func (c *userCommand) readPassword() (string, error) {
	if c.password != "" {
		return c.password, nil
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password on stdin")
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

package main

import (
	"flag"
	"io"
	"os"

	"github.com/tern-im/tern/internal/config"
)

// parseInterleaved parses flags that may come before or after positional
// arguments (PROTOCOL §14) and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// commonFlags are the config-locating flags every command takes.
type commonFlags struct {
	configFile string
	data       string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.configFile, "c", "", "YAML config `file` (configs/tern.yaml documents every key)")
	fs.StringVar(&c.data, "data", "", "data `dir` (default ./data; env TERN_DATA)")
}

// load builds the config: defaults, then the file, then TERN_* variables,
// then flags.
func (c *commonFlags) load() (*config.Config, error) {
	cfg := config.DefaultConfig()
	if c.configFile != "" {
		var err error
		if cfg, err = config.Load(c.configFile); err != nil {
			return nil, err
		}
	}
	cfg.ApplyEnv(os.LookupEnv)
	if c.data != "" {
		cfg.Data = c.data
	}
	return cfg, nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"provision", "run"}},
		{[]string{"help"}, []string{"provision", "run"}},
		{[]string{"provision", "--help"}, []string{"-users", "-groups", "-group-size", "-out", "-server"}},
		{[]string{"run", "--help"}, []string{"-scenario", "-rate", "-duration", "-qos", "-payload", "-encoding",
			"-drop", "-outage", "-latency", "-jitter", "-bandwidth", "-storm-at", "-raw", "-source-ips", "-json"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			if err := run(tc.args, &out, &errOut); err != nil {
				t.Fatalf("run: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("help lacks %q:\n%s", w, errOut.String())
				}
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"run", "--encoding", "xml"},
		{"run", "--qos", "2"},
		{"run", "--source-ips", "10.0.0.1"},
		{"run", "extra"},
		{"provision", "--admin-token", ""},
		{"provision", "--admin-token", "t", "--users", "0"},
	} {
		var out, errOut bytes.Buffer
		if err := run(args, &out, &errOut); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

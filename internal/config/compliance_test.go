package config

import (
	"strings"
	"testing"
)

func TestValidateCompliance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"audit file size", func(c *Config) { c.Audit.MaxFileSize = 100 }, "audit.max_file_size"},
		{"rule name", func(c *Config) { c.DLP.Rules = []DLPRule{{Match: "x", Action: "flag"}} }, "dlp.rules[0].name"},
		{"rule name twice", func(c *Config) {
			c.DLP.Rules = []DLPRule{{Name: "a", Match: "x", Action: "flag"}, {Name: "a", Match: "y", Action: "flag"}}
		}, "dlp.rules[1].name"},
		{"rule regexp", func(c *Config) { c.DLP.Rules = []DLPRule{{Name: "a", Match: "(", Action: "flag"}} }, "dlp.rules[0].match"},
		{"rule backreference (not RE2)", func(c *Config) { c.DLP.Rules = []DLPRule{{Name: "a", Match: `(a)\1`, Action: "flag"}} }, "dlp.rules[0].match"},
		{"rule action", func(c *Config) { c.DLP.Rules = []DLPRule{{Name: "a", Match: "x", Action: "drop"}} }, "dlp.rules[0].action"},
		{"webhook url", func(c *Config) { c.DLP.Webhook.URL = "ftp://x" }, "dlp.webhook.url"},
		{"webhook timeout", func(c *Config) { c.DLP.Webhook.Timeout = 0 }, "dlp.webhook.timeout"},
		{"webhook fail", func(c *Config) { c.DLP.Webhook.Fail = "maybe" }, "dlp.webhook.fail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
	c, err := Decode(strings.NewReader("dlp:\n  rules:\n    - {name: card, match: '\\d{16}', action: redact}\n  webhook: {url: 'http://127.0.0.1:9/x', fail: closed}\naudit:\n  stdout: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.DLP.Rules) != 1 || c.DLP.Rules[0].Action != "redact" || c.DLP.Webhook.Fail != "closed" || c.DLP.Webhook.Timeout == 0 || !c.Audit.Stdout || !c.Audit.Enabled {
		t.Fatalf("decoded %+v %+v", c.DLP, c.Audit)
	}
}

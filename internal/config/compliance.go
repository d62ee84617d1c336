package config

import (
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Audit configures the audit log (PROTOCOL §16, docs/compliance.md).
type Audit struct {
	// Enabled writes the audit log.
	Enabled bool `yaml:"enabled"`
	// Dir holds the audit files; empty means {data}/audit.
	Dir string `yaml:"dir"`
	// MaxFileSize rotates to a new file before one would grow beyond it.
	MaxFileSize ByteSize `yaml:"max_file_size"`
	// Stdout also writes every audit line to standard output (for log
	// shippers), apart from the server's log lines on standard error.
	Stdout bool `yaml:"stdout"`
}

// DLP is the content policy applied to the text of sends and edits.
type DLP struct {
	// Rules are applied in order; the strongest action of those that
	// match wins (block over redact over flag), and every redact rule that
	// matches rewrites its matches.
	Rules []DLPRule `yaml:"rules"`
	// Webhook, when its URL is set, is asked about every message the
	// rules did not block.
	Webhook DLPWebhook `yaml:"webhook"`
}

// DLPRule is one content rule.
type DLPRule struct {
	Name string `yaml:"name"`
	// Match is an RE2 regular expression (Go regexp syntax).
	Match string `yaml:"match"`
	// Action is block (err 451), redact (the match stored as
	// [redacted]) or flag (stored and audited).
	Action string `yaml:"action"`
}

// DLPWebhook is an external content check: POST {uid, cv, b}, answer
// {action} with action allow, block, redact or flag.
type DLPWebhook struct {
	// URL is http or https; empty means no webhook.
	URL string `yaml:"url"`
	// Timeout bounds one call.
	Timeout time.Duration `yaml:"timeout"`
	// Fail is what happens when the webhook fails or times out: open
	// (the message passes) or closed (it is refused with err 451).
	Fail string `yaml:"fail"`
}

func defaultAudit() Audit { return Audit{Enabled: true, MaxFileSize: 64 << 20} }

func defaultDLP() DLP {
	return DLP{Rules: []DLPRule{}, Webhook: DLPWebhook{Timeout: 2 * time.Second, Fail: "open"}}
}

func (c *Config) validateCompliance(bad func(field, format string, args ...any)) {
	if c.Audit.MaxFileSize < 4<<10 {
		bad("audit.max_file_size", "%s is below 4KiB", c.Audit.MaxFileSize)
	}
	seen := map[string]bool{}
	for i, r := range c.DLP.Rules {
		field := fmt.Sprintf("dlp.rules[%d]", i)
		if r.Name == "" {
			bad(field+".name", "must not be empty")
		} else if seen[r.Name] {
			bad(field+".name", "%q is used twice", r.Name)
		}
		seen[r.Name] = true
		if r.Match == "" {
			bad(field+".match", "must not be empty")
		} else if _, err := regexp.Compile(r.Match); err != nil {
			bad(field+".match", "%v", err)
		}
		switch r.Action {
		case "block", "redact", "flag":
		default:
			bad(field+".action", "%q is not block, redact or flag", r.Action)
		}
	}
	w := c.DLP.Webhook
	if w.URL != "" {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("dlp.webhook.url", "%q is not an http or https URL", w.URL)
		}
	}
	if w.Timeout <= 0 {
		bad("dlp.webhook.timeout", "must be positive")
	}
	switch w.Fail {
	case "open", "closed":
	default:
		bad("dlp.webhook.fail", "%q is not open or closed", w.Fail)
	}
}

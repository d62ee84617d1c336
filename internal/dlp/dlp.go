// Package dlp is Tern's content policy (PROTOCOL §16): ordered RE2 rules
// that block, redact or flag the text of a message, and an optional
// webhook asked about every message the rules did not block. The
// service evaluates a Policy once per send or edit; E2EE bodies are never
// given to it.
package dlp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tern-im/tern/internal/im"
)

// Redacted replaces what a redact rule matched.
const Redacted = "[redacted]"

// Errors.
var (
	ErrBadRule    = errors.New("dlp: bad rule")
	ErrBadWebhook = errors.New("dlp: bad webhook answer")
)

// Rule is one configured rule (config dlp.rules).
type Rule struct {
	Name   string
	Match  string // RE2
	Action string // block, redact or flag
}

// Webhook is the optional external check (config dlp.webhook).
type Webhook struct {
	URL     string
	Timeout time.Duration
	// FailClosed refuses a message when the webhook fails or times out;
	// otherwise it passes (with the rules' verdict).
	FailClosed bool
	// Client makes the calls; nil means a client with Timeout.
	Client *http.Client
}

type rule struct {
	name   string
	re     *regexp.Regexp
	action string
}

// Policy is a compiled content policy. It is safe for concurrent use.
type Policy struct {
	rules []rule
	hook  *Webhook
	// OnWebhookError, if set, is told each failed webhook call (logging).
	OnWebhookError func(error)
	// verdicts counts Check's answers by action (metrics); hookErrors the
	// failed webhook calls.
	verdicts   [4]atomic.Uint64
	hookErrors atomic.Uint64
}

// Actions are the verdicts in the order of Verdicts.
var Actions = [4]string{im.DLPAllow, im.DLPFlag, im.DLPRedact, im.DLPBlock}

// Verdicts returns how many messages got each of Actions since New.
func (p *Policy) Verdicts() [4]uint64 {
	var out [4]uint64
	for i := range out {
		out[i] = p.verdicts[i].Load()
	}
	return out
}

// WebhookErrors returns how many webhook calls failed since New.
func (p *Policy) WebhookErrors() uint64 { return p.hookErrors.Load() }

func (p *Policy) count(v im.Verdict) im.Verdict {
	p.verdicts[strength[v.Action]].Add(1)
	return v
}

// strength orders actions: the strongest matching one wins.
var strength = map[string]int{im.DLPAllow: 0, im.DLPFlag: 1, im.DLPRedact: 2, im.DLPBlock: 3}

// New compiles rules; hook may be nil.
func New(rules []Rule, hook *Webhook) (*Policy, error) {
	p := &Policy{hook: hook}
	for i, r := range rules {
		re, err := regexp.Compile(r.Match)
		if err != nil {
			return nil, fmt.Errorf("%w %d (%s): %v", ErrBadRule, i, r.Name, err)
		}
		if r.Action != im.DLPBlock && r.Action != im.DLPRedact && r.Action != im.DLPFlag {
			return nil, fmt.Errorf("%w %d (%s): action %q", ErrBadRule, i, r.Name, r.Action)
		}
		p.rules = append(p.rules, rule{name: r.Name, re: re, action: r.Action})
	}
	if hook != nil && hook.Client == nil {
		hook.Client = &http.Client{Timeout: hook.Timeout}
	}
	return p, nil
}

// Empty reports whether the policy has neither rules nor a webhook.
func (p *Policy) Empty() bool { return p == nil || (len(p.rules) == 0 && p.hook == nil) }

// Check judges body, sent by uid into cv: the strongest action of the
// matching rules (block stops there), every redact rule's matches
// replaced, then the webhook's answer on the text as it would be stored.
func (p *Policy) Check(ctx context.Context, uid, cv, body string) (im.Verdict, error) {
	v := p.check(ctx, uid, cv, body)
	return p.count(v), nil
}

func (p *Policy) check(ctx context.Context, uid, cv, body string) im.Verdict {
	v := im.Verdict{Action: im.DLPAllow, Body: body}
	var names []string
	for _, r := range p.rules {
		if !r.re.MatchString(v.Body) {
			continue
		}
		names = append(names, r.name)
		if strength[r.action] > strength[v.Action] {
			v.Action = r.action
		}
		if r.action == im.DLPBlock {
			v.Rule = strings.Join(names, ",")
			return v
		}
		if r.action == im.DLPRedact {
			v.Body = r.re.ReplaceAllLiteralString(v.Body, Redacted)
		}
	}
	v.Rule = strings.Join(names, ",")
	if p.hook == nil {
		return v
	}
	w, err := p.ask(ctx, uid, cv, v.Body)
	if err != nil {
		p.hookErrors.Add(1)
		if p.OnWebhookError != nil {
			p.OnWebhookError(err)
		}
		if p.hook.FailClosed {
			return im.Verdict{Action: im.DLPBlock, Rule: "webhook-unavailable"}
		}
		return v
	}
	if strength[w.Action] > strength[v.Action] {
		v.Action = w.Action
		v.Rule = strings.Join(append(names, "webhook"), ",")
	}
	if w.Action == im.DLPRedact {
		v.Body = w.B
		if v.Body == "" {
			v.Body = Redacted
		}
	}
	return v
}

// hookRequest is what the webhook gets; hookAnswer what it answers.
type hookRequest struct {
	UID string `json:"uid"`
	CV  string `json:"cv"`
	B   string `json:"b"`
}

type hookAnswer struct {
	Action string `json:"action"`
	// B, with redact, is the text to store (default: [redacted]).
	B string `json:"b,omitempty"`
}

func (p *Policy) ask(ctx context.Context, uid, cv, body string) (hookAnswer, error) {
	var a hookAnswer
	raw, err := json.Marshal(hookRequest{UID: uid, CV: cv, B: body})
	if err != nil {
		return a, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.hook.URL, bytes.NewReader(raw))
	if err != nil {
		return a, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hook.Client.Do(req)
	if err != nil {
		return a, fmt.Errorf("dlp webhook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("dlp webhook: %s", resp.Status)
	}
	return parseAnswer(resp.Body)
}

// parseAnswer reads a webhook's answer (at most 64 KiB): an action the
// policy knows, and with redact an optional text.
func parseAnswer(r io.Reader) (hookAnswer, error) {
	var a hookAnswer
	if err := json.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&a); err != nil {
		return a, fmt.Errorf("%w: %v", ErrBadWebhook, err)
	}
	if _, ok := strength[a.Action]; !ok {
		return a, fmt.Errorf("%w: action %q", ErrBadWebhook, a.Action)
	}
	return a, nil
}

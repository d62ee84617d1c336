package im

import (
	"context"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Content policy actions (PROTOCOL §16), weakest first.
const (
	DLPAllow  = "allow"
	DLPFlag   = "flag"
	DLPRedact = "redact"
	DLPBlock  = "block"
)

// Verdict is a content policy's judgement of one text.
type Verdict struct {
	// Action is DLPAllow, DLPFlag, DLPRedact or DLPBlock.
	Action string
	// Rule names the rules (and "webhook") that decided, comma-separated.
	Rule string
	// Body is the text to store (redactions applied).
	Body string
}

// ContentPolicy judges the text of a send or an edit once per message.
// A Check that cannot decide (webhook down) answers by its own fail-open
// or fail-closed setting, never an error the sender sees.
type ContentPolicy interface {
	Check(ctx context.Context, uid, cv, body string) (Verdict, error)
}

// Hold is a legal hold on a user or a conversation: what it covers is
// never trimmed or purged, and a delete only hides the body from users.
type Hold struct {
	ID      string `json:"id"`
	UID     string `json:"uid,omitempty"`
	CV      string `json:"cv,omitempty"`
	Reason  string `json:"reason,omitempty"`
	By      string `json:"by,omitempty"`
	Created int64  `json:"created"` // Unix ms
}

// Covers reports whether the hold covers event ev: its conversation, its
// author, or a participant of its DM.
func (h Hold) Covers(ev *Event) bool {
	if h.CV != "" {
		return ev.CV == h.CV
	}
	if ev.From == h.UID {
		return true
	}
	a, b, gid, ok := ParseConv(ev.CV)
	return ok && gid == "" && (a == h.UID || b == h.UID)
}

// HeldBy reports whether any of hs covers ev.
func HeldBy(hs []Hold, ev *Event) bool {
	for _, h := range hs {
		if h.Covers(ev) {
			return true
		}
	}
	return false
}

// Holds keeps legal holds. Holds are few (an investigation each), so an
// implementation may keep them all in memory.
type Holds interface {
	// AddHold stores h with a new ID and Created and returns it.
	AddHold(h Hold) (Hold, error)
	// RemoveHold removes and returns hold id (ErrNotFound if unknown).
	RemoveHold(id string) (Hold, error)
	// Holds lists every hold, oldest first.
	Holds() ([]Hold, error)
	// Held reports whether a hold covers ev.
	Held(ev *Event) (bool, error)
}

// ConvRetention keeps a retention per conversation; conversations without
// one follow the server default (im.retention).
type ConvRetention interface {
	// SetRetention sets cv's retention; 0 removes it.
	SetRetention(cv string, d time.Duration) error
	// Retention is cv's own retention (0 when it follows the default).
	Retention(cv string) (time.Duration, error)
}

// ExportQuery selects stored events for an export: those of conversation
// CV (all conversations when empty), or of the conversations of user UID
// (within their membership windows), with Since ≤ ts < Until (0: open).
type ExportQuery struct {
	UID, CV      string
	Since, Until int64
}

// Exporter reads stored events whole: bodies of held deleted messages
// and every edit included, in conversation then seq order, without
// holding them all in memory.
type Exporter interface {
	Export(q ExportQuery, fn func(*Event) error) error
}

// Forgetter is told about conversation events that left the store
// (retention) or whose bodies were purged (a delete without a hold), so
// that what is derived from them (the search index, file references)
// forgets them too. It must not block for long: it runs on the trimmer
// or the sequencer goroutine.
type Forgetter interface {
	Forget(evs []Forgotten)
}

// Forgotten is one event that left the store or that users can no
// longer read.
type Forgotten struct {
	CV  string
	ID  ulid.ULID
	Att []Att
	// Deleted: a del event made it a tombstone; otherwise retention
	// removed it from the store.
	Deleted bool
	// Held: a legal hold keeps its body and files for export, so file
	// storage must keep its attachments; indexes for users forget it.
	Held bool
}

// Compliance is what the compliance features need of a store.
type Compliance interface {
	Holds
	ConvRetention
	Exporter
}

// Forgetters hands what the store forgot to every Forgetter added, in
// order: the broker gives one to the store when it opens it, and the
// features built later (search index, file storage) Add themselves. It is
// safe for concurrent use.
type Forgetters struct {
	mu sync.RWMutex
	fs []Forgetter
}

// Add registers f.
func (h *Forgetters) Add(f Forgetter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fs = append(h.fs, f)
}

// Forget tells every registered Forgetter.
func (h *Forgetters) Forget(evs []Forgotten) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, f := range h.fs {
		f.Forget(evs)
	}
}

// Cutoffs is the rule of retention at now: def is the server default's
// cutoff in Unix ms (0 when cutoff is zero: the default keeps
// everything), and of(cv) a conversation's, now less its own retention
// where own has one, else def.
func Cutoffs(now, cutoff time.Time, own map[string]time.Duration) (def int64, of func(cv string) int64) {
	if !cutoff.IsZero() {
		def = max(cutoff.UnixMilli(), 0)
	}
	return def, func(cv string) int64 {
		if r, ok := own[cv]; ok {
			return now.UnixMilli() - r.Milliseconds()
		}
		return def
	}
}

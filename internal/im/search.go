package im

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/topics"
)

// Search limits (PROTOCOL §15).
const (
	// MaxSearchQuery is the longest q, in bytes.
	MaxSearchQuery = 512
	// MaxSearchTerms caps the words, phrases and from: filters of one q.
	MaxSearchTerms = 16
	// DefaultSearchMax and MaxSearchMax are a page's default and largest
	// number of hits.
	DefaultSearchMax = 20
	MaxSearchMax     = 100
)

// Search errors (400, each naming its argument).
var (
	ErrBadQuery  = newError(400, "q: must be 1 to 512 bytes of text with at most 16 words, phrases and from:uid")
	ErrBadMax    = newError(400, "max: must be 0 to 100")
	ErrBadBefore = newError(400, "before: must be a message id")
)

// SearchTerms is a parsed search query q: every word and every phrase
// must match (case and accents ignored, the index's business); From, when
// set, keeps the messages of those senders only.
type SearchTerms struct {
	Words   []string
	Phrases []string
	From    []string
}

// Empty reports whether the query asks for nothing.
func (t SearchTerms) Empty() bool {
	return len(t.Words) == 0 && len(t.Phrases) == 0 && len(t.From) == 0
}

// ParseSearch parses q: words separated by white space, "quoted phrases"
// (an unclosed quote runs to the end), and from:uid filters (several
// from: match any of them). It returns ErrBadQuery (with the reason) for
// an empty or oversized q, a bad uid or too many terms.
func ParseSearch(q string) (SearchTerms, error) {
	var t SearchTerms
	if q == "" || len(q) > MaxSearchQuery || !utf8.ValidString(q) {
		return t, ErrBadQuery
	}
	n := 0
	for rest := q; ; {
		rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
		if rest == "" {
			break
		}
		if after, ok := strings.CutPrefix(rest, `"`); ok {
			phrase, tail, _ := strings.Cut(after, `"`)
			rest = tail
			if phrase = strings.Join(strings.Fields(phrase), " "); phrase != "" {
				t.Phrases = append(t.Phrases, phrase)
				n++
			}
		} else {
			end := strings.IndexFunc(rest, func(r rune) bool { return unicode.IsSpace(r) || r == '"' })
			if end < 0 {
				end = len(rest)
			}
			word := rest[:end]
			rest = rest[end:]
			if uid, ok := strings.CutPrefix(word, "from:"); ok {
				if topics.CheckUID(uid) != nil {
					return SearchTerms{}, ErrBadQuery.WithMsg("q: from: needs a valid uid")
				}
				t.From = append(t.From, uid)
			} else {
				t.Words = append(t.Words, word)
			}
			n++
		}
		if n > MaxSearchTerms {
			return SearchTerms{}, ErrBadQuery.WithMsg("q: more than 16 words, phrases and from:uid")
		}
	}
	if t.Empty() {
		return SearchTerms{}, ErrBadQuery.WithMsg("q: no words")
	}
	return t, nil
}

// ConvWindow is a conversation a searcher may read, and the seqs of it.
type ConvWindow struct {
	CV     string
	Window Window
}

// SearchQuery is one page of a search: the matches inside Convs, newest
// (highest id) first, below Before (zero: from the newest).
type SearchQuery struct {
	Terms  SearchTerms
	Convs  []ConvWindow
	Before ulid.ULID
	Max    int
}

// Hit is one matching message and HL, a short snippet of its current
// text with each match marked (PROTOCOL §15; the format is the index's,
// docs/search.md).
type Hit struct {
	ID ulid.ULID
	HL string
}

// Searcher finds messages by their text. It follows the Log (see Feed)
// on its own, so it may be behind: a hit may name an event that has
// since expired or been deleted (the caller reads each hit back from
// the store), and a fresh message may be missing for a moment.
type Searcher interface {
	// Search returns up to q.Max hits, newest first; more reports that
	// the page was cut at Max.
	Search(q SearchQuery) (hits []Hit, more bool, err error)
	// Joined lists the group conversations uid has ever been added to
	// (as the member events it indexed say), left ones included: a past
	// member still reads up to the leave.
	Joined(uid string) ([]string, error)
}

// Feed reads conversation events in commit order, for followers of the
// Log that keep their own position (the search index).
type Feed interface {
	// After returns up to max conversation events (not aux ones) with an
	// id above after, in id order (which is commit order). Expired and
	// trimmed events are skipped.
	After(after ulid.ULID, max int) ([]Event, error)
}

// CTE2EE is the content type of an end-to-end encrypted message (§12).
const CTE2EE = "application/vnd.tern.e2ee"

// Searchable reports whether ev is a message whose text may be indexed:
// a msg with a body that is not end-to-end encrypted.
func Searchable(ev *Event) bool {
	return ev.T == TMsg && ev.B != "" && ev.CT != CTE2EE && len(ev.E2E) == 0
}

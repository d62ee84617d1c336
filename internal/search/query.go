package search

import (
	"fmt"
	"html"
	"strings"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search/query"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

var _ im.Searcher = (*Index)(nil)

// maxJoined caps the conversations Joined returns.
const maxJoined = 10000

// Search implements im.Searcher: every word and phrase must match the
// text, one of the From senders (if any) must have sent it, and it must
// lie in one of q.Convs inside its window; newest (highest id) first.
func (x *Index) Search(q im.SearchQuery) ([]im.Hit, bool, error) {
	if len(q.Convs) == 0 || q.Max <= 0 {
		return nil, false, nil
	}
	text := x.textQueries(q.Terms)
	if len(text) == 0 && len(q.Terms.From) == 0 {
		return nil, false, nil // only words without letters or digits
	}
	must := text
	if len(q.Terms.From) > 0 {
		from := make([]query.Query, len(q.Terms.From))
		for i, uid := range q.Terms.From {
			from[i] = term(fFrom, uid)
		}
		must = append(must, bleve.NewDisjunctionQuery(from...))
	}
	convs := make([]query.Query, len(q.Convs))
	for i, c := range q.Convs {
		convs[i] = convQuery(c)
	}
	must = append(must, bleve.NewDisjunctionQuery(convs...))

	req := bleve.NewSearchRequestOptions(bleve.NewConjunctionQuery(must...), q.Max+1, 0, false)
	req.SortBy([]string{"-_id"})
	req.Score = "none" // the order is by id; scores would be wasted work
	if q.Before != (ulid.ULID{}) {
		req.SearchAfter = []string{q.Before.String()}
	}
	req.Fields = []string{fBody}
	if len(text) > 0 {
		req.Highlight = bleve.NewHighlightWithStyle(highlighterName)
		req.Highlight.Fields = []string{fBody}
	}
	res, err := x.idx.Search(req)
	if err != nil {
		return nil, false, fmt.Errorf("search: %w", err)
	}
	more := len(res.Hits) > q.Max
	if more {
		res.Hits = res.Hits[:q.Max]
	}
	hits := make([]im.Hit, 0, len(res.Hits))
	for _, h := range res.Hits {
		id, err := ulid.ParseStrict(h.ID)
		if err != nil {
			continue // not a message document (cannot match a message query)
		}
		hl := ""
		if fr := h.Fragments[fBody]; len(fr) > 0 {
			hl = fr[0]
		} else if b, ok := h.Fields[fBody].(string); ok {
			hl = html.EscapeString(cut(b, snippet))
		}
		hits = append(hits, im.Hit{ID: id, HL: hl})
	}
	return hits, more, nil
}

// textQueries turns the words and phrases into queries on the text, as
// analysed by the index: a word that splits into several tokens
// ("e-mail") is a phrase; one with no token at all ("!!") is dropped.
func (x *Index) textQueries(t im.SearchTerms) []query.Query {
	an := x.idx.Mapping().AnalyzerNamed(analyzerName)
	var out []query.Query
	for _, s := range append(append([]string(nil), t.Words...), t.Phrases...) {
		toks := an.Analyze([]byte(s))
		switch len(toks) {
		case 0:
		case 1:
			out = append(out, term(fBody, string(toks[0].Term)))
		default:
			terms := make([]string, len(toks))
			for i, tk := range toks {
				terms[i] = string(tk.Term)
			}
			out = append(out, bleve.NewPhraseQuery(terms, fBody))
		}
	}
	return out
}

func term(field, v string) query.Query {
	q := bleve.NewTermQuery(v)
	q.SetField(field)
	return q
}

// convQuery matches the messages of c inside its window.
func convQuery(c im.ConvWindow) query.Query {
	cv := term(fCV, c.CV)
	w := c.Window
	if w.From <= 1 && w.To == 0 {
		return cv
	}
	var lo, hi *float64
	yes := true
	if w.From > 1 {
		f := float64(w.From)
		lo = &f
	}
	if w.To > 0 {
		t := float64(w.To)
		hi = &t
	}
	r := bleve.NewNumericRangeInclusiveQuery(lo, hi, &yes, &yes)
	r.SetField(fSeq)
	return bleve.NewConjunctionQuery(cv, r)
}

// cut cuts s to at most n bytes on a rune boundary, with "…" if cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Joined implements im.Searcher from the member events indexed.
func (x *Index) Joined(uid string) ([]string, error) {
	req := bleve.NewSearchRequestOptions(term(fUser, uid), maxJoined, 0, false)
	req.Score = "none"
	res, err := x.idx.Search(req)
	if err != nil {
		return nil, fmt.Errorf("search: joined: %w", err)
	}
	prefix := joinedID(uid, "")
	out := make([]string, 0, len(res.Hits))
	for _, h := range res.Hits {
		if cv, ok := strings.CutPrefix(h.ID, prefix); ok {
			out = append(out, cv)
		}
	}
	return out, nil
}

// Prune removes the messages the store no longer keeps: older than the
// retention, and disappearing messages past their expiry, both to the
// hour (the hour that holds the cutoff stays until it is over). It
// returns how many it removed.
func (x *Index) Prune() (int, error) {
	now := x.o.Now().UnixMilli()
	incl := false
	before := func(field string, ms int64) query.Query {
		h := hour(ms)
		q := bleve.NewTermRangeInclusiveQuery("", h, nil, &incl)
		q.SetField(field)
		return q
	}
	gone := []query.Query{before(fExp, now)}
	if x.o.Retention > 0 {
		gone = append(gone, before(fHour, now-x.o.Retention.Milliseconds()))
	}
	total := 0
	for {
		req := bleve.NewSearchRequestOptions(bleve.NewDisjunctionQuery(gone...), x.o.Batch, 0, false)
		req.Score = "none"
		res, err := x.idx.Search(req)
		if err != nil {
			return total, fmt.Errorf("search: prune: %w", err)
		}
		if len(res.Hits) == 0 {
			return total, nil
		}
		b := x.idx.NewBatch()
		for _, h := range res.Hits {
			b.Delete(h.ID)
		}
		if err := x.idx.Batch(b); err != nil {
			return total, fmt.Errorf("search: prune: %w", err)
		}
		total += len(res.Hits)
	}
}

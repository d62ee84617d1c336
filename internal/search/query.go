package search

import (
	"fmt"
	"github.com/tern-im/tern/internal/codec"
	"html"
	"math"
	"strings"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search"
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
	text, rarest := x.textQueries(q.Terms)
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

	// Newest first means sorting every match by id, which costs in
	// proportion to the matches: a common word in a large store has tens
	// of thousands. So the search looks back in growing time windows
	// (whole days, disjoint, newest first) and stops once the page is
	// full; a rare word ends in the last, open window, cheaply, since it
	// has few matches anyway.
	upper := x.o.Now()
	if q.Before != (ulid.ULID{}) {
		upper = ulid.Time(q.Before.Time())
	}
	windows := lookBack
	if rarest <= x.rare {
		windows = lookBack[len(lookBack)-1:] // few matches: one open search
	}
	var found []*search.DocumentMatch
	newer := "" // the exclusive upper day of the next window; "" none
	for i, back := range windows {
		older := ""
		if i < len(windows)-1 {
			older = day(upper.Add(-back).UnixMilli())
		}
		res, err := x.idx.Search(x.request(must, older, newer, q.Before, q.Max+1-len(found)))
		if err != nil {
			return nil, false, fmt.Errorf("search: %w", err)
		}
		found = append(found, res.Hits...)
		if len(found) > q.Max {
			break
		}
		newer = older
	}
	more := len(found) > q.Max
	if more {
		found = found[:q.Max]
	}
	if len(found) == 0 {
		return nil, false, nil
	}
	snippets, err := x.snippets(found, text)
	if err != nil {
		return nil, false, err
	}
	hits := make([]im.Hit, 0, len(found))
	for _, h := range found {
		id, err := ulid.ParseStrict(h.ID)
		if err != nil {
			continue // not a message document (cannot match a message query)
		}
		hits = append(hits, im.Hit{ID: id, HL: snippets[h.ID]})
	}
	return hits, more, nil
}

// lookBack are the time windows a search looks back over, each from the
// same upper bound (now, or the time of before), in days; the last is
// open.
var lookBack = []time.Duration{24 * time.Hour, 8 * 24 * time.Hour, 40 * 24 * time.Hour, 0}

// rareTerm: when some word of the query is in at most this many messages
// of the whole index, the matches are few enough to sort at once, and one
// open search is cheaper than several windows.
const rareTerm = 20000

// request is a search for the conjunction of must within the days
// [older, newer) ("": unbounded), below before, of up to n hits. It asks
// for ids only: without term vectors (which highlighting needs) bleve
// turns the keyword disjunctions and conjunctions into bitmap operations.
func (x *Index) request(must []query.Query, older, newer string, before ulid.ULID, n int) *bleve.SearchRequest {
	if older != "" || newer != "" {
		yes, no := true, false
		r := bleve.NewTermRangeInclusiveQuery(older, newer, &yes, &no)
		r.SetField(fDay)
		must = append(must[:len(must):len(must)], r)
	}
	req := bleve.NewSearchRequestOptions(bleve.NewConjunctionQuery(must...), n, 0, false)
	req.SortBy([]string{"-" + fID})
	req.Score = "none" // the order is by id; scores would be wasted work
	if before != (ulid.ULID{}) {
		req.SearchAfter = []string{before.String()}
	}
	return req
}

// snippets cuts the hl of each hit: the text around the matches of text
// (highlighted by a second search over those documents only), or the
// start of the text when the query has no words.
func (x *Index) snippets(hits []*search.DocumentMatch, text []query.Query) (map[string]string, error) {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	var q query.Query = bleve.NewDocIDQuery(ids)
	if len(text) > 0 {
		q = bleve.NewConjunctionQuery(append([]query.Query{q}, text...)...)
	}
	req := bleve.NewSearchRequestOptions(q, len(ids), 0, false)
	req.Score = "none"
	req.Fields = []string{fBody}
	if len(text) > 0 {
		req.Highlight = bleve.NewHighlightWithStyle(highlighterName)
		req.Highlight.Fields = []string{fBody}
	}
	res, err := x.idx.Search(req)
	if err != nil {
		return nil, fmt.Errorf("search: snippets: %w", err)
	}
	out := make(map[string]string, len(res.Hits))
	for _, h := range res.Hits {
		if fr := h.Fragments[fBody]; len(fr) > 0 {
			out[h.ID] = fr[0]
		} else if b, ok := h.Fields[fBody].(string); ok {
			out[h.ID] = html.EscapeString(cut(b, snippet))
		}
	}
	return out, nil
}

// textQueries turns the words and phrases into queries on the text, as
// analysed by the index: a word that splits into several tokens
// ("e-mail") is a phrase; one with no token at all ("!!") is dropped.
// rarest is the fewest messages any of their tokens is in (MaxUint64
// without text).
func (x *Index) textQueries(t im.SearchTerms) (out []query.Query, rarest uint64) {
	an := x.idx.Mapping().AnalyzerNamed(analyzerName)
	rarest = math.MaxUint64
	for _, s := range append(append([]string(nil), t.Words...), t.Phrases...) {
		toks := an.Analyze([]byte(s))
		terms := make([]string, len(toks))
		for i, tk := range toks {
			terms[i] = string(tk.Term)
			rarest = min(rarest, x.docFreq(fBody, terms[i]))
		}
		switch len(terms) {
		case 0:
		case 1:
			out = append(out, term(fBody, terms[0]))
		default:
			out = append(out, bleve.NewPhraseQuery(terms, fBody))
		}
	}
	return out, rarest
}

// docFreq is how many documents have term in field (MaxUint64 when the
// index cannot say).
func (x *Index) docFreq(field, t string) uint64 {
	d, err := x.idx.FieldDictRange(field, []byte(t), []byte(t))
	if err != nil {
		return math.MaxUint64
	}
	defer d.Close() // a read-only iterator
	e, err := d.Next()
	switch {
	case err != nil:
		return math.MaxUint64
	case e == nil || e.Term != t:
		return 0
	}
	return e.Count
}

func term(field, v string) query.Query {
	q := bleve.NewTermQuery(v)
	q.SetField(field)
	return q
}

// convQuery matches the messages of c inside the blocks of its window.
func convQuery(c im.ConvWindow) query.Query {
	cv := term(fCV, c.CV)
	w := c.Window
	if w.From <= 1 && w.To == 0 {
		return cv
	}
	lo, hi := "", ""
	if w.From > 1 {
		lo = block(w.From)
	}
	if w.To > 0 {
		hi = block(w.To)
	}
	yes := true
	r := bleve.NewTermRangeInclusiveQuery(lo, hi, &yes, &yes)
	r.SetField(fBlk)
	return bleve.NewConjunctionQuery(cv, r)
}

// cut cuts s to at most n bytes on a rune boundary, with "…" if cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return codec.CutUTF8(s, n) + "…"
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
// day (the day that holds the cutoff stays until it is over). It
// returns how many it removed.
func (x *Index) Prune() (int, error) {
	now := x.o.Now().UnixMilli()
	incl := false
	before := func(field string, ms int64) query.Query {
		q := bleve.NewTermRangeInclusiveQuery("", day(ms), nil, &incl)
		q.SetField(field)
		return q
	}
	gone := []query.Query{before(fExp, now)}
	if x.o.Retention > 0 {
		gone = append(gone, before(fDay, now-x.o.Retention.Milliseconds()))
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

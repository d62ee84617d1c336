package im_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/topics"
)

func TestParseSearch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		q    string
		want im.SearchTerms
		err  bool
	}{
		{q: "hello", want: im.SearchTerms{Words: []string{"hello"}}},
		{q: "  Café   au lait ", want: im.SearchTerms{Words: []string{"Café", "au", "lait"}}},
		{q: `"blue  door" red`, want: im.SearchTerms{Words: []string{"red"}, Phrases: []string{"blue door"}}},
		{q: `say "unclosed phrase`, want: im.SearchTerms{Words: []string{"say"}, Phrases: []string{"unclosed phrase"}}},
		{q: `a"b"c`, want: im.SearchTerms{Words: []string{"a", "c"}, Phrases: []string{"b"}}},
		{q: "from:bob", want: im.SearchTerms{From: []string{"bob"}}},
		{q: "x from:bob from:carol", want: im.SearchTerms{Words: []string{"x"}, From: []string{"bob", "carol"}}},
		{q: `"from:bob"`, want: im.SearchTerms{Phrases: []string{"from:bob"}}},
		{q: "", err: true},
		{q: "   ", err: true},
		{q: `""`, err: true},
		{q: "from:", err: true},
		{q: "from:Bob!", err: true},
		{q: "\xff", err: true},
		{q: strings.Repeat("a", im.MaxSearchQuery+1), err: true},
		{q: strings.Repeat("w ", im.MaxSearchTerms), want: im.SearchTerms{Words: slices.Repeat([]string{"w"}, im.MaxSearchTerms)}},
		{q: strings.Repeat("w ", im.MaxSearchTerms+1), err: true},
	} {
		got, err := im.ParseSearch(c.q)
		if c.err {
			if err == nil || !errors.Is(err, im.ErrBadQuery) {
				t.Errorf("%q: want ErrBadQuery, got %+v, %v", c.q, got, err)
			}
			continue
		}
		if err != nil || !equalTerms(got, c.want) {
			t.Errorf("%q: got %+v, %v; want %+v", c.q, got, err, c.want)
		}
	}
}

func equalTerms(a, b im.SearchTerms) bool {
	return slices.Equal(a.Words, b.Words) && slices.Equal(a.Phrases, b.Phrases) && slices.Equal(a.From, b.From)
}

// FuzzParseSearch: error or valid, never panic; valid terms are
// non-empty, bounded, and round-trip through their canonical form.
func FuzzParseSearch(f *testing.F) {
	for _, s := range []string{"hello", `"a phrase" word from:bob`, `"open`, `a"b"c`, "from:", "from:a from:b", "Ça va ?", "\x00", `""""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		terms, err := im.ParseSearch(q)
		if err != nil {
			var e *im.Error
			if !errors.As(err, &e) || e.Code != 400 || !strings.HasPrefix(e.Msg, "q:") {
				t.Fatalf("ParseSearch(%q): error %v is not a 400 naming q", q, err)
			}
			return
		}
		if terms.Empty() || len(terms.Words)+len(terms.Phrases)+len(terms.From) > im.MaxSearchTerms {
			t.Fatalf("ParseSearch(%q) = %+v", q, terms)
		}
		var parts []string
		for _, w := range terms.Words {
			if w == "" || strings.ContainsFunc(w, unicode.IsSpace) || strings.Contains(w, `"`) || strings.HasPrefix(w, "from:") {
				t.Fatalf("ParseSearch(%q): bad word %q", q, w)
			}
			parts = append(parts, w)
		}
		for _, p := range terms.Phrases {
			if p == "" || strings.Contains(p, `"`) || p != strings.Join(strings.Fields(p), " ") {
				t.Fatalf("ParseSearch(%q): bad phrase %q", q, p)
			}
			parts = append(parts, `"`+p+`"`)
		}
		for _, u := range terms.From {
			if topics.CheckUID(u) != nil {
				t.Fatalf("ParseSearch(%q): bad uid %q", q, u)
			}
			parts = append(parts, "from:"+u)
		}
		canon := strings.Join(parts, " ")
		if len(canon) > im.MaxSearchQuery {
			return // quotes and spaces added to a q near the limit
		}
		back, err := im.ParseSearch(canon)
		if err != nil || !equalTerms(back, terms) {
			t.Fatalf("ParseSearch(%q) = %+v, canonical form parses as %+v, %v", q, terms, back, err)
		}
	})
}

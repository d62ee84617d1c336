package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// inlineLink matches [text](target) and ![alt](target).
	inlineLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// refLink matches a reference definition: [name]: target
	refLink = regexp.MustCompile(`(?m)^\s{0,3}\[[^\]]+\]:\s+(\S+)`)
	// codeSpan matches inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`[^`\n]*`")
)

// links returns the link targets of a Markdown document, outside fenced
// code blocks, indented code and code spans.
func links(md string) []string {
	var text strings.Builder
	fenced := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t") {
			continue
		}
		text.WriteString(codeSpan.ReplaceAllString(line, ""))
		text.WriteByte('\n')
	}
	var out []string
	for _, re := range []*regexp.Regexp{inlineLink, refLink} {
		for _, m := range re.FindAllStringSubmatch(text.String(), -1) {
			out = append(out, strings.Trim(m[1], "<>"))
		}
	}
	return out
}

// TestRelativeLinksResolve checks that every relative link in README.md
// and docs/*.md names a file or directory inside the repository: a clone
// must carry everything its documents point at (the README linked
// ../shared/PROTOCOL.md, outside the repository).
func TestRelativeLinksResolve(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "README.md"))
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, target := range links(string(b)) {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			path, _, _ := strings.Cut(target, "#")
			abs := filepath.Clean(filepath.Join(filepath.Dir(f), filepath.FromSlash(path)))
			if abs != root && !strings.HasPrefix(abs, root+string(filepath.Separator)) {
				t.Errorf("%s: link %q leaves the repository", rel, target)
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s: link %q does not resolve: %v", rel, target, err)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no relative links found: the link scanner is broken")
	}
}

func TestLinks(t *testing.T) {
	md := "See [a](docs/a.md#x) and ![i](img.png \"t\").\n" +
		"```\n[not](fenced.md)\n```\n" +
		"    [not](indented.md)\n" +
		"`[not](span.md)` [b]: <b.md>\n" +
		"[ref]: ../c.md\n"
	got := strings.Join(links(md), " ")
	if want := "docs/a.md#x img.png b.md ../c.md"; got != want {
		t.Errorf("links = %q, want %q", got, want)
	}
}

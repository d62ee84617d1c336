package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

// Break is where a chain breaks: the first line of File (1-based Line)
// that is not a line of the chain, or whose prev is not the hash of the
// line before it (that line was edited, or lines were removed or
// inserted in between).
type Break struct {
	File   string
	Line   int
	Reason string
}

func (b *Break) Error() string { return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Reason) }

// Result is a verified chain.
type Result struct {
	Lines int
	// Head is the hash of the last line: an operator who records it can
	// later tell that nothing was cut from the end.
	Head string
	// Anchor is the prev of the first line (Genesis for a whole chain).
	Anchor string
}

// maxLine bounds one line when verifying (lines are far smaller).
const maxLine = 1 << 20

// Verify checks that files, in order, form one chain. With whole, the
// first line must start the chain (prev = Genesis); otherwise the first
// line's prev is taken as given (files of a chain whose older files were
// archived). It returns a *Break for a broken chain, or another error
// when a file cannot be read.
func Verify(files []string, whole bool) (Result, error) {
	var r Result
	prev := ""
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return r, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		n := 0
		for sc.Scan() {
			n++
			ln := sc.Bytes()
			var l line
			if err := json.Unmarshal(ln, &l); err != nil || l.Prev == "" || l.Type == "" || l.TS == "" {
				f.Close()
				return r, &Break{File: path, Line: n, Reason: "not an audit line (edited or corrupt)"}
			}
			switch {
			case prev == "" && whole && l.Prev != Genesis:
				f.Close()
				return r, &Break{File: path, Line: n, Reason: "the chain does not start here (lines removed before it)"}
			case prev == "":
				r.Anchor = l.Prev
			case l.Prev != prev:
				f.Close()
				where := fmt.Sprintf("line %d", n-1)
				if n == 1 {
					where = "the last line of the previous file"
				}
				return r, &Break{File: path, Line: n, Reason: "prev is not the hash of " + where + " (it was edited, or lines were removed or inserted)"}
			}
			prev = Hash(ln)
			r.Lines++
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return r, &Break{File: path, Line: n + 1, Reason: "unreadable: " + err.Error()}
		}
	}
	r.Head = prev
	return r, nil
}

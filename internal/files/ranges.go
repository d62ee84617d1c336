package files

// Range is an inclusive range of chunk indexes [first, last], encoded as
// a two-element array: [[0,41],[50,50]].
type Range [2]int

// Ranges turns a have map (one byte per chunk, non-zero = stored) into
// ascending, non-overlapping, non-adjacent ranges.
func Ranges(have []byte) []Range {
	out := []Range{}
	for i := 0; i < len(have); i++ {
		if have[i] == 0 {
			continue
		}
		j := i
		for j+1 < len(have) && have[j+1] != 0 {
			j++
		}
		out = append(out, Range{i, j})
		i = j
	}
	return out
}

// HaveAll reports whether every one of n chunks is stored.
func HaveAll(have []byte, n int) bool {
	if len(have) < n {
		return false
	}
	for _, b := range have[:n] {
		if b == 0 {
			return false
		}
	}
	return true
}

// Missing returns the chunk indexes of n not covered by rs, for a client
// that resumes an upload from a have list. Ranges out of [0, n) or
// inverted are ignored.
func Missing(rs []Range, n int) []int {
	have := make([]bool, n)
	for _, r := range rs {
		lo, hi := max(r[0], 0), min(r[1], n-1)
		for i := lo; i <= hi; i++ {
			have[i] = true
		}
	}
	var out []int
	for i, h := range have {
		if !h {
			out = append(out, i)
		}
	}
	return out
}

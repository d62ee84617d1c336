package files

import (
	"slices"
	"testing"
)

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		have []byte
		want []Range
	}{
		{nil, []Range{}},
		{[]byte{0, 0}, []Range{}},
		{[]byte{1, 1, 1}, []Range{{0, 2}}},
		{[]byte{1, 0, 1, 1, 0, 2}, []Range{{0, 0}, {2, 3}, {5, 5}}},
	} {
		if got := Ranges(tc.have); !slices.Equal(got, tc.want) {
			t.Errorf("Ranges(%v) = %v, want %v", tc.have, got, tc.want)
		}
	}
	if got := Missing([]Range{{0, 0}, {2, 3}, {9, 7}, {-5, -1}, {5, 99}}, 7); !slices.Equal(got, []int{1, 4}) {
		t.Errorf("Missing = %v", got)
	}
}

// FuzzRanges: a have map turned into ranges and back gives the same
// stored set; Missing never panics on any range list.
func FuzzRanges(f *testing.F) {
	f.Add([]byte{1, 0, 1, 1}, 3, -1, 2)
	f.Fuzz(func(t *testing.T, have []byte, n, lo, hi int) {
		rs := Ranges(have)
		back := make([]byte, len(have))
		for i, r := range rs {
			if r[0] > r[1] || i > 0 && r[0] <= rs[i-1][1]+1 {
				t.Fatalf("ranges %v not ascending and apart", rs)
			}
			for j := r[0]; j <= r[1]; j++ {
				back[j] = 1
			}
		}
		for i := range have {
			if (have[i] != 0) != (back[i] != 0) {
				t.Fatalf("have %v → %v", have, rs)
			}
		}
		if missing := Missing(rs, len(have)); len(missing)+count(have) != len(have) {
			t.Fatalf("Missing(%v) = %v for %v", rs, missing, have)
		}
		if n >= 0 && n < 1<<16 {
			Missing(append(rs, Range{lo, hi}), n)
		}
		if HaveAll(have, len(have)) != (count(have) == len(have)) {
			t.Fatal("HaveAll disagrees")
		}
	})
}

func count(have []byte) int {
	n := 0
	for _, b := range have {
		if b != 0 {
			n++
		}
	}
	return n
}

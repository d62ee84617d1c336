package search

// SetRare sets how many documents a word may be in for a search to skip
// the look-back windows (rareTerm otherwise). Call before searching.
func (x *Index) SetRare(n uint64) { x.rare = n }

// DeleteInternalForTest removes an internal key, as an index written by
// an older version lacks it.
func (x *Index) DeleteInternalForTest(k []byte) error { return x.idx.DeleteInternal(k) }

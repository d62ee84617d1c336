package search

// SetRare sets how many documents a word may be in for a search to skip
// the look-back windows (rareTerm otherwise). Call before searching.
func (x *Index) SetRare(n uint64) { x.rare = n }

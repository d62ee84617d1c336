package codec

// SearchArgs are the arguments of `search` (§15): q is the query (words,
// "phrases", from:uid), cv narrows it to one conversation, before is the
// id of a message (the next of the previous page), max the page size.
type SearchArgs struct {
	Q      string `json:"q" cbor:"q"`
	CV     string `json:"cv,omitempty" cbor:"cv,omitempty"`
	Before string `json:"before,omitempty" cbor:"before,omitempty"`
	Max    int    `json:"max,omitempty" cbor:"max,omitempty"`
}

// SearchItem is one hit: the stored message (as msg.get returns it) and
// hl, a short snippet of its current text with the matches marked.
type SearchItem struct {
	Event
	HL string `json:"hl" cbor:"hl"`
}

// SearchResult is the result of `search`, newest first; Next, when set,
// is the before of the next page.
type SearchResult struct {
	Items []SearchItem `json:"items" cbor:"items"`
	Next  string       `json:"next,omitempty" cbor:"next,omitempty"`
}

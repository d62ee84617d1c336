// Package search is Tern's full-text index of messages (PROTOCOL §15):
// a bleve index (scorch) in {data}/search that follows the store's
// committed events by position (im.Feed) on its own goroutine, off the
// commit path, and answers im.Searcher. Its position is stored in the
// index with each batch, so after a crash or restart it catches up from
// where it was. docs/search.md describes it.
package search

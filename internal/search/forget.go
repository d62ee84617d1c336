package search

import "github.com/tern-im/tern/internal/im"

var _ im.Forgetter = (*Index)(nil)

// Forget removes from the index the messages the store's trimmer removed
// (a conversation's own retention, which the index's own pruning by the
// server default does not know): im.Forgetter. Deleted messages are
// left to the del events the index follows.
func (x *Index) Forget(evs []im.Forgotten) {
	b := x.idx.NewBatch()
	for _, f := range evs {
		if !f.Deleted {
			b.Delete(f.ID.String())
		}
	}
	if b.Size() == 0 {
		return
	}
	// Written to disk before it returns: unlike what the cursor covers, a
	// lost Forget would never be repeated.
	if err := x.persist(b); err != nil {
		x.o.Log.Warn("search: forget trimmed messages", "count", b.Size(), "error", err)
	}
}

package messaging_test

import (
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/config"
)

// TestRetentionReset: once the stream is trimmed (here by a direct Trim
// with the cutoff in the future, as the trimmer would do after the
// retention), a sync from before what is kept answers reset with the
// conversations and us_head; a sync from us_head goes on normally; a
// resend of a trimmed command is acknowledged and not appended again;
// seq and us continue.
func TestRetentionReset(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.IM.Retention = time.Hour })
	users(b, "alice", "bob")
	a, bo := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")
	for _, cmid := range []string{"1", "2", "3"} {
		a.text("bob", cmid, "old "+cmid)
		a.next()
		bo.next()
	}
	st, err := b.Store().Trim(time.Now().Add(time.Minute))
	if err != nil || st.Pointers != 6 || st.Events != 3 || st.IDs != 3 {
		t.Fatalf("trim: %+v, %v", st, err)
	}
	for _, since := range []uint64{0, 1} {
		var r codec.SyncResult
		bo.ok("sync", map[string]any{"since": since}, &r)
		if !r.Reset || r.USHead != 3 || len(r.Convs) != 1 || r.Convs[0] != "d:alice:bob" || len(r.Ev) != 0 {
			t.Fatalf("sync from %d: %+v", since, r)
		}
	}
	if evs := bo.syncAll(3, 10); len(evs) != 0 {
		t.Fatalf("sync from us_head: %+v", evs)
	}
	// The trimmed command is done: a resend is acknowledged, nothing more.
	a.text("bob", "2", "old 2")
	bo.none(bo.in, "a resent trimmed command")
	a.none(a.in, "a resent trimmed command")
	a.text("bob", "4", "new")
	if ev := bo.next(); ev.Seq != 4 || ev.US != 4 {
		t.Fatalf("after trimming: %+v", ev)
	}
	a.next()
	if evs := bo.syncAll(3, 10); len(evs) != 1 || evs[0].B != "new" {
		t.Fatalf("sync after trimming: %+v", evs)
	}
	var h codec.HistoryResult
	bo.ok("history", map[string]any{"cv": "d:alice:bob"}, &h)
	if len(h.Items) != 1 || h.First != 4 || !h.Complete {
		t.Fatalf("history: %+v", h)
	}
}

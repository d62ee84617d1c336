package jetstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nuid"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

// TestUnclearAnswerCommitsOnce: a retry after an answer that did not say
// whether the batch committed takes the earlier attempt's results when it
// did commit, and otherwise fences it, so that the earlier batch, applied
// late, cannot commit as well (the linearizability check found events
// stored twice after leader step-downs).
func TestUnclearAnswerCommitsOnce(t *testing.T) {
	s := openOn(t, startNode(t), 1, nil, nil)
	cv := "g:settle"
	text := func(b string) *im.Append {
		return &im.Append{CV: cv, To: []string{"u"}, Event: im.Event{T: im.TMsg, From: "u", B: b}}
	}
	first := text("one")
	if err := s.Append(first); err != nil {
		t.Fatal(err)
	}

	// The first attempt committed, but its answer was lost: the retry
	// adopts it and stores nothing.
	lost := unsureTry{batch: "lost", head: convHeadSubj(cv), id: first.Event.ID,
		seq: first.Event.Seq, ts: first.Event.TS, us: first.US}
	retry := text("one")
	done, _, err := s.try(retry, true, &[]unsureTry{lost})
	if err != nil || !done {
		t.Fatalf("retry: done %v, %v", done, err)
	}
	if retry.Event.ID != first.Event.ID || retry.Event.Seq != 1 || len(retry.US) != 1 || retry.US[0] != 1 {
		t.Fatalf("retry got id %s seq %d us %v, want the first attempt's (%s, 1, [1])",
			retry.Event.ID, retry.Event.Seq, retry.US, first.Event.ID)
	}
	if n, err := s.ConvSeq(cv); err != nil || n != 1 {
		t.Fatalf("conversation seq %d (%v) after the adopted retry, want 1", n, err)
	}
	if n, err := s.USHead("u"); err != nil || n != 1 {
		t.Fatalf("us head %d (%v) after the adopted retry, want 1", n, err)
	}

	// An attempt that has not committed (yet): the retry commits anew and
	// fences it.
	late := unsureTry{batch: "late", head: convHeadSubj(cv), id: ulid.Make(), seq: 2, ts: time.Now().UnixMilli(), us: []uint64{2}}
	next := text("two")
	done, _, err = s.try(next, true, &[]unsureTry{late})
	if err != nil || !done {
		t.Fatalf("next: done %v, %v", done, err)
	}
	if next.Event.Seq != 2 || next.Event.ID == late.id {
		t.Fatalf("next got seq %d id %s, want a new commit at seq 2", next.Event.Seq, next.Event.ID)
	}
	// The late batch arrives now: its id index entry must be new, and the
	// fence is there.
	_, err = s.publish(nuid.Next(), []msg{{subj: idSubj(late.id), data: []byte(eventSubj(cv, 2)), expect: exp(0)}}, func() {})
	if !errors.Is(err, errConflict) {
		t.Fatalf("the late attempt's id index entry: %v, want a refused compare-and-set", err)
	}
	if _, err := s.EventByID(late.id); !errors.Is(err, im.ErrNotFound) {
		t.Fatalf("EventByID of the fenced attempt: %v, want not found", err)
	}
	if n, err := s.ConvSeq(cv); err != nil || n != 2 {
		t.Fatalf("conversation seq %d (%v), want 2", n, err)
	}
}

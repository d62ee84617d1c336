package jetstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/im/imtest"
)

// TestFeedBatched: After read in batches of direct gets (three records
// a batch here, so every read crosses batch boundaries) returns exactly
// what the read of one record per request from the leader returns, from
// every position and for every max, over a log of three conversations
// with aux events, an edit, a deleted message (its tombstone), an event
// that expired (TTL) and one removed on its own, its index entry left;
// on one node and on a three-node cluster, read through each node once
// every replica has applied the log.
func TestFeedBatched(t *testing.T) {
	t.Parallel()
	t.Run("node", func(t *testing.T) {
		t.Parallel()
		clk := imtest.NewClock()
		n := startNode(t)
		feedBatched(t, clk, []*Node{n}, []*Store{openOn(t, n, 1, clk.Now, nil)})
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		clk := imtest.NewClock()
		nodes := startCluster(t)
		var stores []*Store
		for _, n := range nodes {
			stores = append(stores, openOn(t, n, 3, clk.Now, nil))
		}
		feedBatched(t, clk, nodes, stores)
	})
}

func feedBatched(t *testing.T, clk *imtest.Clock, nodes []*Node, stores []*Store) {
	// Appends go through the nodes in turn.
	turn := 0
	send := func(a *im.Append) *im.Append {
		t.Helper()
		st := stores[turn%len(stores)]
		turn++
		if err := st.Append(a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	dm := im.DMConv("a", "b")
	cvs := []string{dm, "g:x", "g:y"}
	var sent []*im.Append
	for i := range 12 {
		cv := cvs[i%len(cvs)]
		m := send(&im.Append{CV: cv, To: []string{"a", "b"}, Event: im.Event{T: im.TMsg, From: "a", B: fmt.Sprint("m", i)}})
		sent = append(sent, m)
		send(&im.Append{CV: cv, Aux: true, To: []string{"a"}, Event: im.Event{T: im.TMark, From: "b", K: "read", Upto: m.Event.Seq}})
		clk.Advance(time.Second)
	}
	edited := sent[1].Event.ID
	sent = append(sent, send(&im.Append{CV: sent[1].CV, To: []string{"a", "b"}, Event: im.Event{T: im.TEdit, From: "a", B: "m1 again", Tgt: &edited}}))
	gone := sent[4].Event.ID
	sent = append(sent, send(&im.Append{CV: sent[4].CV, To: []string{"a", "b"}, Event: im.Event{T: im.TDel, From: "a", Tgt: &gone},
		Purge: &im.Purge{ID: gone}}))
	expiring := send(&im.Append{CV: "g:x", To: []string{"a"}, TTL: time.Second, Event: im.Event{T: im.TMsg, From: "a", B: "soon gone", TTL: 1}})
	lone := send(&im.Append{CV: "g:y", To: []string{"a"}, Event: im.Event{T: im.TMsg, From: "a", B: "its entry stays"}})
	for i := range 4 {
		sent = append(sent, send(&im.Append{CV: cvs[i%len(cvs)], To: []string{"a"}, Event: im.Event{T: im.TMsg, From: "b", B: fmt.Sprint("late", i)}}))
	}
	// The event of lone goes on its own (as if it expired before its
	// index entry): the feed must read past its entry.
	st := stores[0]
	r, err := st.getLeader(eventSubj(lone.CV, lone.Event.Seq))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.log.DeleteMsg(ctx, r.seq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event with a TTL to expire", func() bool {
		_, err := st.getLeader(idSubj(expiring.Event.ID))
		return errors.Is(err, ErrNotFound)
	})
	waitFor(t, "every replica to apply the log", func() bool { return applied(t, st, nodes) })

	var want []ulid.ULID
	for _, a := range sent {
		want = append(want, a.Event.ID)
	}
	for i, rd := range stores {
		// The reference: one record per request, from the leader.
		rd.feedBatch = 0
		ref := readAll(t, rd, ulid.ULID{}, 100)
		ids := make([]ulid.ULID, len(ref))
		for j, ev := range ref {
			ids[j] = ev.ID
		}
		if !sameSet(ids, want) {
			t.Fatalf("node %d: the one-at-a-time feed has %d events, want the %d kept conversation events", i+1, len(ids), len(want))
		}
		if tomb := ref[slices.Index(ids, gone)]; !tomb.Deleted || tomb.B != "" {
			t.Fatalf("node %d: the deleted message reads %+v, want its tombstone", i+1, tomb)
		}
		gets, falls := rd.feedGets.Load(), rd.feedFallbacks.Load()
		positions := append([]ulid.ULID{{}, expiring.Event.ID, lone.Event.ID}, ids...)
		for _, from := range positions {
			for _, max := range []int{1, 2, 3, 4, 7, 100} {
				rd.feedBatch = 0
				one, err := rd.After(from, max)
				if err != nil {
					t.Fatal(err)
				}
				rd.feedBatch = 3
				batched, err := rd.After(from, max)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(batched, one) {
					t.Fatalf("node %d: After(%s, %d) batched: %d events %v, one at a time: %d %v",
						i+1, from, max, len(batched), idsOf(batched), len(one), idsOf(one))
				}
			}
		}
		// Paged through in batches: the whole feed once.
		if all := readAll(t, rd, ulid.ULID{}, 5); !reflect.DeepEqual(all, ref) {
			t.Fatalf("node %d: batched pages of 5 gave %v, want %v", i+1, idsOf(all), ids)
		}
		// An event a replica's answer lacked is read from the leader.
		first := sent[0]
		if ev, found, err := rd.feedEvent(eventSubj(first.CV, first.Event.Seq), nil); err != nil || !found || !reflect.DeepEqual(ev, ref[0]) {
			t.Fatalf("node %d: an event missing from the answer reads %+v, %v, %v; want %+v", i+1, ev, found, err, ref[0])
		}
		if rd.feedGets.Load() == gets || rd.feedFallbacks.Load() != falls {
			t.Fatalf("node %d: %d batched gets, %d fallbacks: the batched reads did not run", i+1,
				rd.feedGets.Load()-gets, rd.feedFallbacks.Load()-falls)
		}
	}
}

// readAll pages through the feed after from, max at a time.
func readAll(t *testing.T, s *Store, from ulid.ULID, max int) []im.Event {
	t.Helper()
	var out []im.Event
	for {
		evs, err := s.After(from, max)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
		if len(evs) < max {
			return out
		}
		from = evs[len(evs)-1].ID
	}
}

func idsOf(evs []im.Event) []ulid.ULID {
	out := make([]ulid.ULID, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// sameSet reports whether a and b hold the same ids, each once.
func sameSet(a, b []ulid.ULID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, ulid.ULID.Compare)
	slices.SortFunc(b, ulid.ULID.Compare)
	return slices.Equal(a, b)
}

// applied reports whether every node's replica of the log holds what the
// leader holds (its own state, as its monitoring reports it).
func applied(t testing.TB, st *Store, nodes []*Node) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := st.log.Info(ctx)
	if err != nil {
		return false
	}
	for _, n := range nodes {
		js, err := n.Server().Jsz(&server.JSzOptions{Accounts: true, Streams: true})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range js.AccountDetails {
			for _, sd := range a.Streams {
				if sd.Name == LogStream {
					found = true
					if sd.State.LastSeq != info.State.LastSeq || sd.State.Msgs != info.State.Msgs {
						return false
					}
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitFor polls cond every 20 ms until it holds, failing after 20 s:
// the server expires messages and replicas apply the log on their own.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

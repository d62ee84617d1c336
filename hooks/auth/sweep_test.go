package auth

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/tern-im/tern/internal/metrics"
	"github.com/tern-im/tern/internal/session"
	"github.com/tern-im/tern/topics"
)

// TestSweepTwoPhase: a closed connection's session is removed only when
// the sweep finds it closed twice in a row (a normal disconnect finishes
// in between); open connections and sessions removed meanwhile by
// OnDisconnect are left alone, and the gauge is decremented once.
func TestSweepTwoPhase(t *testing.T) {
	t.Parallel()
	srv := mqtt.New(nil)
	reg := session.NewRegistry(0)
	h := &Hook{opts: &Options{Sessions: reg, Metrics: metrics.New(srv.Info)}}
	client := func(id string, closed bool) *mqtt.Client {
		cl := srv.NewClient(nil, "t", id, false)
		reg.Add(cl, topics.Identity{UID: "alice", DID: id})
		h.opts.Metrics.Connections.Inc()
		if closed {
			cl.Stop(nil)
		}
		return cl
	}
	open := client("open", false)
	leaked := client("leaked", true)
	racing := client("racing", true)
	if n := h.sweep(); n != 0 || reg.Len() != 3 {
		t.Fatalf("first sweep removed %d, %d left", n, reg.Len())
	}
	h.OnDisconnect(racing, nil, true) // the normal path, late
	if n := h.sweep(); n != 1 || reg.Len() != 1 {
		t.Fatalf("second sweep removed %d, %d left", n, reg.Len())
	}
	if _, ok := reg.Get(open); !ok {
		t.Fatal("the open connection lost its session")
	}
	if _, ok := reg.Get(leaked); ok {
		t.Fatal("the leaked session is still there")
	}
	if n := h.sweep(); n != 0 {
		t.Fatalf("third sweep removed %d", n)
	}
}

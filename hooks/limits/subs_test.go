package limits

import (
	"log/slog"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"

	"github.com/tern-im/tern/internal/metrics"
)

// TestSubscriptionCapFilters checks which filters of one SUBSCRIBE are
// refused at the cap, and the SUBACK codes they get per protocol version.
func TestSubscriptionCapFilters(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		version byte
		refused byte
	}{{"mqtt3", 4, 0x80}, {"mqtt5", 5, 0x97}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
			h := new(Hook)
			h.SetOpts(slog.New(slog.DiscardHandler), nil)
			if err := h.Init(&Options{MaxSubscriptions: 2, Metrics: metrics.New(new(system.Info)), Server: srv}); err != nil {
				t.Fatal(err)
			}
			cl := srv.NewClient(nil, "test", "alice.p1", false)
			cl.Properties.ProtocolVersion = tt.version
			cl.State.Subscriptions.Add("a", packets.Subscription{Filter: "a"})
			in := packets.Packet{Filters: packets.Subscriptions{{Filter: "a"}, {Filter: "b"}, {Filter: "c"}, {Filter: "b"}, {Filter: "d"}}}
			out := h.OnSubscribe(cl, in)
			var got []string
			for _, f := range out.Filters {
				got = append(got, f.Filter)
			}
			want := []string{"a", "b", overCap, "b", overCap}
			if len(got) != len(want) {
				t.Fatalf("filters %q", got)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("filters %q, want %q", got, want)
				}
			}
			if in.Filters[2].Filter != "c" {
				t.Fatal("the caller's filters were modified")
			}
			// mochi answers the marker as an invalid filter (0x80 for 3.1.1).
			codes := []byte{1, 1, 0x8F, 1, 0x8F}
			if tt.version < 5 {
				codes[2], codes[4] = 0x80, 0x80
			}
			h.OnSubscribed(cl, out, codes)
			if codes[2] != tt.refused || codes[4] != tt.refused || codes[0] != 1 || codes[1] != 1 {
				t.Fatalf("SUBACK codes %x", codes)
			}
		})
	}
}

// TestOnSubscribeSkipsRetainedScanForDeviceTopics checks that a device's
// own downstream filter, where nothing is ever retained, is marked "send
// no retained messages" (mochi then skips its deep retained scan), and
// that every other filter keeps the client's retain handling.
func TestOnSubscribeSkipsRetainedScanForDeviceTopics(t *testing.T) {
	t.Parallel()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	h := new(Hook)
	h.SetOpts(slog.New(slog.DiscardHandler), nil)
	if err := h.Init(&Options{MaxSubscriptions: 0, Metrics: metrics.New(new(system.Info)), Server: srv}); err != nil {
		t.Fatal(err)
	}
	cl := srv.NewClient(nil, "test", "alice.p1", false)
	cl.Properties.ProtocolVersion = 5
	in := packets.Packet{Filters: packets.Subscriptions{
		{Filter: "im/u/alice/d/p1/#"},
		{Filter: "im/p/bob"},
		{Filter: "im/g/g1/meta", RetainHandling: 1},
		{Filter: "im/u/alice/d/p1/in", RetainHandling: 1},
		{Filter: "sensors/#"},
	}}
	out := h.OnSubscribe(cl, in)
	want := []byte{2, 0, 1, 2, 0}
	for i, f := range out.Filters {
		if f.RetainHandling != want[i] || f.Filter != in.Filters[i].Filter {
			t.Errorf("filter %q: retain handling %d, want %d", f.Filter, f.RetainHandling, want[i])
		}
	}
	if in.Filters[0].RetainHandling != 0 {
		t.Fatal("the caller's filters were modified")
	}
}

package firmwaresim

import (
	"testing"
	"time"
)

func TestAccounting(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	// d builds a delivery from sender 0 of message n with positions.
	d := func(n, seq, us uint64) Delivery {
		return Delivery{Sender: 0, N: n, CV: "d:a:b", Seq: seq, US: us, SentAt: t0, At: t0.Add(time.Duration(n) * time.Millisecond)}
	}
	tests := []struct {
		name       string
		sent       int // messages 1..sent from sender 0 to device 1
		applied    []Delivery
		delivered  uint64
		lost       uint64
		duplicated uint64
		outOfOrder uint64
		unexpected uint64
	}{
		{name: "all in order", sent: 3,
			applied:   []Delivery{d(1, 1, 1), d(2, 2, 2), d(3, 3, 3)},
			delivered: 3},
		{name: "one lost", sent: 3,
			applied:   []Delivery{d(1, 1, 1), d(3, 3, 2)},
			delivered: 2, lost: 1},
		{name: "nothing arrived", sent: 2, lost: 2},
		{name: "stored twice (new us and seq)", sent: 2,
			applied:   []Delivery{d(1, 1, 1), d(1, 2, 2), d(2, 3, 3)},
			delivered: 2, duplicated: 1},
		{name: "sender order swapped", sent: 2,
			applied:   []Delivery{d(2, 1, 1), d(1, 2, 2)},
			delivered: 2, outOfOrder: 1},
		{name: "seq goes back", sent: 2,
			applied:   []Delivery{d(1, 5, 1), d(2, 4, 2)},
			delivered: 2, outOfOrder: 1},
		{name: "us skips", sent: 2,
			applied:   []Delivery{d(1, 1, 1), d(2, 2, 3)},
			delivered: 2, outOfOrder: 1},
		{name: "raw mode without positions", sent: 3,
			applied:   []Delivery{d(1, 0, 0), d(3, 0, 0), d(2, 0, 0), d(3, 0, 0)},
			delivered: 3, duplicated: 1, outOfOrder: 1},
		{name: "never sent", sent: 1,
			applied:   []Delivery{d(1, 1, 1), d(7, 2, 2)},
			delivered: 1, unexpected: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := NewAccounting()
			for n := 1; n <= tc.sent; n++ {
				a.Sent(0, uint64(n), []int{1})
			}
			for _, x := range tc.applied {
				a.Applied(1, x)
			}
			c, lat, _ := a.Snapshot()
			if c.Delivered != tc.delivered || a.Lost() != tc.lost || c.Duplicated != tc.duplicated ||
				c.OutOfOrder != tc.outOfOrder || c.Unexpected != tc.unexpected {
				t.Errorf("delivered %d lost %d dup %d ooo %d unexpected %d; want %d %d %d %d %d",
					c.Delivered, a.Lost(), c.Duplicated, c.OutOfOrder, c.Unexpected,
					tc.delivered, tc.lost, tc.duplicated, tc.outOfOrder, tc.unexpected)
			}
			if lat.TotalCount() != int64(tc.delivered) {
				t.Errorf("latency samples %d, want %d", lat.TotalCount(), tc.delivered)
			}
			if a.Expected() != uint64(tc.sent) {
				t.Errorf("expected %d, want %d", a.Expected(), tc.sent)
			}
		})
	}
}

func TestAccountingRecipients(t *testing.T) {
	t.Parallel()
	a := NewAccounting()
	// A group message from 0 to 1, 2, 3; device 2 never gets it, device 9
	// is not a member.
	a.Sent(0, 1, []int{1, 2, 3})
	a.Sent(0, 2, []int{1})
	for _, dev := range []int{1, 3, 9} {
		a.Applied(dev, Delivery{Sender: 0, N: 1})
	}
	a.Applied(1, Delivery{Sender: 0, N: 2})
	c, _, _ := a.Snapshot()
	if c.Delivered != 3 || a.Lost() != 1 || c.Unexpected != 1 || a.Expected() != 4 {
		t.Fatalf("delivered %d lost %d unexpected %d expected %d", c.Delivered, a.Lost(), c.Unexpected, a.Expected())
	}
}

func TestAccountingStream(t *testing.T) {
	t.Parallel()
	a := NewAccounting()
	// Non-message events and own echoes move the stream too; a reset
	// (sync reset) makes the next us start over without an error.
	a.StreamEvent(1, 1)
	a.Sent(0, 1, []int{1})
	a.Applied(1, Delivery{Sender: 0, N: 1, US: 2})
	a.StreamEvent(1, 3)
	a.ResetStream(1, 10)
	a.StreamEvent(1, 11)
	a.StreamEvent(1, 13) // skips 12
	c, _, _ := a.Snapshot()
	if c.OutOfOrder != 1 || c.Delivered != 1 {
		t.Fatalf("ooo %d delivered %d, want 1 1", c.OutOfOrder, c.Delivered)
	}
}

func TestStampRoundTrip(t *testing.T) {
	t.Parallel()
	st := Stamp{Run: "3fa9c2d1", Sender: 42, N: 7, SentAt: time.Unix(0, 1732262400123456789)}
	body := st.TextBody(64)
	if len(body) != 64 {
		t.Fatalf("body length %d", len(body))
	}
	got, err := ParseTextBody(body)
	if err != nil || got != st {
		t.Fatalf("text: %+v %v", got, err)
	}
	p := st.RawPayload(64)
	if len(p) != 64 {
		t.Fatalf("payload length %d", len(p))
	}
	got, err = ParseRawPayload(p)
	if err != nil || !got.SentAt.Equal(st.SentAt) || got.Sender != 42 || got.N != 7 || got.Run != "" {
		t.Fatalf("raw: %+v %v", got, err)
	}
	for _, bad := range []string{"", "hello", "~sim.r.1.2~", "~sim.r.a.2.3~", "~sim.r.1.2.3", "~sim.R.1.2.3~", "~sim.1.2.3~"} {
		if _, err := ParseTextBody(bad); err == nil {
			t.Errorf("ParseTextBody(%q) accepted", bad)
		}
	}
	if _, err := ParseRawPayload([]byte("short")); err == nil {
		t.Error("short raw payload accepted")
	}
}

func FuzzParseTextBody(f *testing.F) {
	f.Add("~sim.ab12.1.2.3~xx")
	f.Add("~sim..-1.2.3~")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseTextBody(s)
		if err != nil {
			return
		}
		if got, err := ParseTextBody(st.TextBody(0)); err != nil || got != st {
			t.Fatalf("round trip of %q: %+v %v", s, got, err)
		}
	})
}

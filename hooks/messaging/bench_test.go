package messaging_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/internal/search"
	"github.com/tern-im/tern/topics"
)

// BenchmarkLoopbackDM sends QoS 1 DMs between pairs of paho clients
// through the real broker (TCP loopback, Badger on disk): each op is one
// message published, PUBACKed (so durable) and counted at its receiver.
// The search index follows (as by default); index-catchup-ms is how long
// it took, after the last delivery, to index what was still pending.
func BenchmarkLoopbackDM(b *testing.B) { loopbackDM(b) }

// BenchmarkLoopbackDMNoSearch is BenchmarkLoopbackDM with search.enabled
// false: the difference is what indexing costs the send path.
func BenchmarkLoopbackDMNoSearch(b *testing.B) {
	loopbackDM(b, func(c *config.Config) { c.Search.Enabled = false })
}

func loopbackDM(b *testing.B, opts ...func(*config.Config)) {
	// The senders go beyond the default burst of 500 per device: b.N
	// above 16 × 500 measured the rate limit.
	unlimited := func(c *config.Config) { c.IM.RateBurst = 1 << 30 }
	br := brokertest.Start(b, append([]func(*config.Config){unlimited}, opts...)...)
	const par = 8
	pairs := par * runtime.GOMAXPROCS(0)
	var received atomic.Int64
	senders := make([]paho.Client, pairs)
	for i := range pairs {
		s, r := fmt.Sprint("s", i), fmt.Sprint("r", i)
		users(br, s, r)
		senders[i] = br.Dial(s, "d", pw)
		rc := br.Dial(r, "d", pw)
		brokertest.Subscribe(b, rc, topics.DeviceFilter(r, "d"), 1, func(paho.Client, paho.Message) { received.Add(1) })
	}
	var next atomic.Int64
	var cmid atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % pairs
		c := senders[i]
		topic := topics.Up(fmt.Sprint("s", i), "d", "msg")
		for pb.Next() {
			tok := c.Publish(topic, 1, false, fmt.Appendf(nil, `{"to":"r%d","cmid":"%d","b":"benchmark message"}`, i, cmid.Add(1)))
			if !tok.WaitTimeout(brokertest.Timeout) || tok.Error() != nil {
				b.Errorf("publish: %v", tok.Error())
				return
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // waiting for the tail of deliveries
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(received.Load())/float64(b.N), "delivered/sent")
	if x, ok := br.Search().(*search.Index); ok { // in process in tests
		t0 := time.Now()
		if _, err := x.CatchUp(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "index-catchup-ms")
	}
}

// BenchmarkSync1000 measures a device catching up on 1,000 missed
// messages with sync (pages as large as the packet size allows).
func BenchmarkSync1000(b *testing.B) {
	// alice sends faster than the default rate limit allows.
	br := brokertest.Start(b, func(c *config.Config) { c.IM.RateBurst = 10_000 })
	users(br, "alice", "bob")
	a := connect(b, br, "alice", "p1")
	for i := range 1000 {
		tok := a.c.Publish(topics.Up("alice", "p1", "msg"), 1, false, fmt.Appendf(nil, `{"to":"bob","cmid":"%d","b":"message number %d, of a typical length for a chat"}`, i, i))
		brokertest.Wait(b, tok, "publish")
	}
	bo := connect(b, br, "bob", "b1")
	b.ReportAllocs()
	for b.Loop() {
		if evs := bo.syncAll(0, 1000); len(evs) != 1000 {
			b.Fatalf("synced %d", len(evs))
		}
	}
}

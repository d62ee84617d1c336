package cluster_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/topics"
)

// BenchmarkDM measures acknowledged DM throughput: 8 senders, each
// sending one QoS 1 DM to its own recipient per round and waiting for
// the PUBACK, senders and recipients spread over the nodes; one node on
// Badger against three nodes on embedded JetStream (R3, every write
// fsynced). Run: go test -run '^$' -bench DM -benchtime 400x ./internal/cluster
func BenchmarkDM(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			var nodes []*brokertest.Broker
			if n == 1 {
				nodes = []*brokertest.Broker{brokertest.Start(b)}
			} else {
				nodes = brokertest.StartCluster(b, n)
			}
			const pairs = 8
			senders := make([]*dev, pairs)
			for i := range pairs {
				s, r := fmt.Sprint("s", i), fmt.Sprint("r", i)
				nodes[0].AddUser(s, pw)
				nodes[0].AddUser(r, pw)
				senders[i] = on(b, nodes[i%n], s, "p1")
				on(b, nodes[(i+1)%n], r, "p1")
			}
			seq := 0
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				seq++
				var wg sync.WaitGroup
				for i, d := range senders {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tok := d.c.Publish(topics.Up(d.uid, d.did, topics.UpMsg), 1, false,
							fmt.Appendf(nil, `{"to":"r%d","cmid":"c%d","b":"hello"}`, i, seq))
						if !tok.WaitTimeout(brokertest.Timeout) || tok.Error() != nil {
							b.Errorf("publish: %v", tok.Error())
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*pairs)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

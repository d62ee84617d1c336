package cluster_test

import (
	"fmt"
	"testing"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
	"github.com/tern-im/tern/topics"

	"github.com/tern-im/tern/internal/closedloop"
)

// BenchmarkDM measures acknowledged DM throughput: each sender sends QoS
// 1 DMs to its own recipient, one at a time, waiting for each PUBACK
// (closed loop, no barrier between senders); senders and recipients
// spread over the nodes. One node on Badger against three nodes on
// embedded JetStream (R3, every write fsynced), each with 8 senders (a
// few busy devices) and 64 (a fleet: many devices, each waiting for its
// own acknowledgement). -count n interleaves the four setups n times.
// Besides msgs/s it reports the process's CPU time per message
// (cpu-us/msg), which a busy shared machine disturbs far less.
//
//	go test -run '^$' -bench DM -benchtime 3000x -count 3 ./internal/cluster
func BenchmarkDM(b *testing.B) {
	for _, n := range []int{1, 3} {
		for _, senders := range []int{8, 64} {
			b.Run(fmt.Sprintf("nodes=%d/senders=%d", n, senders), func(b *testing.B) {
				benchDM(b, n, senders, false)
			})
		}
	}
}

// BenchmarkDMBothWays is BenchmarkDM with both ends of every DM sending
// to each other, each from its own node (in a cluster): a chat where
// both type. Two nodes then append to one conversation and one pair of
// user streams at once, and the one whose compare-and-set loses
// re-reads the heads and tries again.
//
//	go test -run '^$' -bench DMBothWays -benchtime 3000x -count 3 ./internal/cluster
func BenchmarkDMBothWays(b *testing.B) {
	for _, n := range []int{1, 3} {
		for _, senders := range []int{8, 64} {
			b.Run(fmt.Sprintf("nodes=%d/senders=%d", n, senders), func(b *testing.B) {
				benchDM(b, n, senders, true)
			})
		}
	}
}

func benchDM(b *testing.B, n, senders int, both bool) {
	// The shipped default: each node's search index in its worker
	// process (brokertest keeps it in process to spare tests a process).
	var nodes []*brokertest.Broker
	if n == 1 {
		nodes = []*brokertest.Broker{brokertest.Start(b, func(c *config.Config) { c.Search.Process = true })}
	} else {
		nodes = brokertest.StartCluster(b, n, func(_ int, c *config.Config) { c.Search.Process = true })
	}
	devs, to := make([]*dev, senders), make([]string, senders)
	for i := range senders {
		s, r := fmt.Sprint("s", i), fmt.Sprint("r", i)
		if both { // pairs: sender 2k is s2k, 2k+1 is its peer r2k
			s, r = fmt.Sprint("s", i/2*2), fmt.Sprint("r", i/2*2)
			if i%2 == 1 {
				s, r = r, s
			}
		}
		if !both || i%2 == 0 {
			nodes[0].AddUser(s, pw)
			nodes[0].AddUser(r, pw)
		}
		devs[i], to[i] = on(b, nodes[i%n], s, "p1"), r
		if !both {
			on(b, nodes[(i+1)%n], r, "p1")
		}
	}
	// Each b.Loop iteration is one message, handed to the senders in turn;
	// a sender sends its next one as soon as the last one is acknowledged.
	// CPU per message: what the nodes, the store and the test clients (all
	// in this process) spent.
	b.ReportAllocs()
	closedloop.Run(b, senders, "msgs/s", "cpu-us/msg", func(i, seq int) {
		d := devs[i]
		tok := d.c.Publish(topics.Up(d.uid, d.did, topics.UpMsg), 1, false,
			fmt.Appendf(nil, `{"to":%q,"cmid":"c%d","b":"hello"}`, to[i], seq))
		if !tok.WaitTimeout(brokertest.Timeout) || tok.Error() != nil {
			b.Errorf("publish: %v", tok.Error())
		}
	})
}

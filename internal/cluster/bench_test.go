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
				benchDM(b, n, senders)
			})
		}
	}
}

func benchDM(b *testing.B, n, senders int) {
	// The shipped default: each node's search index in its worker
	// process (brokertest keeps it in process to spare tests a process).
	var nodes []*brokertest.Broker
	if n == 1 {
		nodes = []*brokertest.Broker{brokertest.Start(b, func(c *config.Config) { c.Search.Process = true })}
	} else {
		nodes = brokertest.StartCluster(b, n, func(_ int, c *config.Config) { c.Search.Process = true })
	}
	devs := make([]*dev, senders)
	for i := range senders {
		s, r := fmt.Sprint("s", i), fmt.Sprint("r", i)
		nodes[0].AddUser(s, pw)
		nodes[0].AddUser(r, pw)
		devs[i] = on(b, nodes[i%n], s, "p1")
		on(b, nodes[(i+1)%n], r, "p1")
	}
	// Each b.Loop iteration is one message, handed to the senders in turn;
	// a sender sends its next one as soon as the last one is acknowledged.
	// CPU per message: what the nodes, the store and the test clients (all
	// in this process) spent.
	b.ReportAllocs()
	closedloop.Run(b, senders, "msgs/s", "cpu-us/msg", func(i, seq int) {
		d := devs[i]
		tok := d.c.Publish(topics.Up(d.uid, d.did, topics.UpMsg), 1, false,
			fmt.Appendf(nil, `{"to":"r%d","cmid":"c%d","b":"hello"}`, i, seq))
		if !tok.WaitTimeout(brokertest.Timeout) || tok.Error() != nil {
			b.Errorf("publish: %v", tok.Error())
		}
	})
}

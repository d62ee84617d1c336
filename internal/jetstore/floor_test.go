package jetstore

import (
	"fmt"
	"testing"

	"github.com/nats-io/nuid"

	"github.com/tern-im/tern/internal/closedloop"
)

// BenchmarkEngineFloor measures what JetStream itself costs on this
// machine beneath any Tern logic, as a floor for the cluster's DM
// throughput (docs/bench.md): closed-loop publishers on a three-node
// embedded cluster (R3, every write fsynced, the log stream's config),
// each waiting for its answer before sending again, of atomic batches of
// one message (the least any replicated append can write) and of ten
// (what a Tern DM writes). It reports batches/s and the process's CPU
// time per batch (three servers and the publishers).
//
//	go test -run '^$' -bench EngineFloor -benchtime 3000x -count 3 ./internal/jetstore
func BenchmarkEngineFloor(b *testing.B) {
	for _, size := range []int{1, 3, 8, 10} {
		for _, pubs := range []int{8, 64} {
			b.Run(fmt.Sprintf("batch=%d/publishers=%d", size, pubs), func(b *testing.B) {
				engineFloor(b, size, pubs)
			})
		}
	}
}

func engineFloor(b *testing.B, size, pubs int) {
	nodes := startCluster(b)
	s := openOn(b, nodes[0], 3, nil, nil)
	payload := make([]byte, 120) // about a stored DM event
	closedloop.Run(b, pubs, "batches/s", "cpu-us/batch", func(p, op int) {
		batch := make([]msg, size)
		for k := range batch {
			batch[k] = msg{subj: fmt.Sprintf("tern.bench.%d.%d.%d", p, op, k), data: payload}
		}
		if _, err := s.publish(nuid.Next(), batch, func() {}); err != nil {
			b.Errorf("publish: %v", err)
		}
	})
}

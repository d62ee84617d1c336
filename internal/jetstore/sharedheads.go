package jetstore

import (
	"bytes"
	"strconv"

	"github.com/nats-io/nats.go"
)

// headsPrefix.<origin> carries, on core NATS, the heads each commit of
// the node origin moved (not a subject of the log stream, whose
// subjects are tern.>).
const headsPrefix = "tern-cl.heads."

// Shared heads. Two nodes that append to one conversation or one user's
// stream at once (both ends of a DM typing, each on its node; members of
// a group on several nodes) race: each batch expects the heads its node
// cached, and JetStream refuses the second of two batches on the same
// heads while the first is in flight. The loser used to back off (1 ms,
// doubling) and read the heads again, and by then the winner's node,
// whose cache was right, had often sent its next append: the same node
// lost again and again (p99 1.3 s at saturation, bench.md).
//
// So each node tells the others, best effort on core NATS, which heads
// its commits moved and their stream sequences. A node that caches such
// a head takes the newer one (headCache.update) and wakes its appends
// that lost on it: they retry at once, with the heads they were sent and
// no read, right after the winner's commit. A lost or late notice costs
// what it cost before (the backoff and a read). Nothing here can make a
// position wrong: JetStream checks every expected sequence.

// shareHeads publishes moved (appendHead lines) to the other nodes.
func (s *Store) shareHeads(moved []byte) {
	if s.origin == "" || len(moved) == 0 {
		return
	}
	_ = s.nc.Publish(headsPrefix+s.origin, moved) // best effort: a lost notice costs a read
}

// appendHead adds "subject seq record" and a newline to p, record being
// the head's stored value (head.record).
func appendHead(p []byte, subject string, seq uint64, record []byte) []byte {
	p = append(p, subject...)
	p = append(p, ' ')
	p = strconv.AppendUint(p, seq, 10)
	p = append(p, ' ')
	p = append(p, record...)
	return append(p, '\n')
}

// heardHeads takes another node's moved heads into the cache.
func (s *Store) heardHeads(m *nats.Msg) {
	if m.Subject == headsPrefix+s.origin {
		return
	}
	for line := range bytes.Lines(m.Data) {
		subject, h, ok := parseSharedHead(line)
		if ok {
			s.heads.update(subject, h)
		}
	}
}

// parseSharedHead reads one appendHead line.
func parseSharedHead(line []byte) (string, head, bool) {
	subject, rest, _ := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
	seqText, record, _ := bytes.Cut(rest, []byte(" "))
	seq, err := strconv.ParseUint(string(seqText), 10, 64)
	if len(subject) == 0 || err != nil || seq == 0 {
		return "", head{}, false
	}
	h, err := parseHead(record)
	if err != nil {
		return "", head{}, false
	}
	h.seq = seq
	return string(subject), h, true
}

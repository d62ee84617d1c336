package jetstore

import (
	"bytes"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
)

// headsSubject carries, on core NATS, the heads each commit moved (not a
// subject of the log stream, whose subjects are tern.>).
const headsSubject = "tern-cl.heads"

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
	m := nats.NewMsg(headsSubject)
	m.Header.Set("Tern-Origin", s.origin)
	m.Data = moved
	_ = s.nc.PublishMsg(m) // best effort: a lost notice costs a read
}

// appendHead adds "subject seq n [id]" and a newline to p.
func appendHead(p []byte, subject string, h head) []byte {
	p = append(p, subject...)
	p = append(p, ' ')
	p = strconv.AppendUint(p, h.seq, 10)
	p = append(p, ' ')
	p = strconv.AppendUint(p, h.n, 10)
	if h.id != (ulid.ULID{}) {
		p = append(p, ' ')
		p = append(p, h.id.String()...)
	}
	return append(p, '\n')
}

// heardHeads takes another node's moved heads into the cache.
func (s *Store) heardHeads(m *nats.Msg) {
	if m.Header.Get("Tern-Origin") == s.origin {
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
	f := bytes.Fields(line)
	if len(f) < 3 || len(f) > 4 {
		return "", head{}, false
	}
	seq, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil || seq == 0 {
		return "", head{}, false
	}
	h, err := parseHead(bytes.Join(f[2:], []byte(" ")))
	if err != nil {
		return "", head{}, false
	}
	h.seq = seq
	return string(f[0]), h, true
}

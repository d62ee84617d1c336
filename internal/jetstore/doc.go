// Package jetstore implements the im ports (im.Store) and accounts.Store
// on NATS JetStream: the store of a Tern cluster, where every node serves
// every user and the shared state lives in JetStream, replicated by its
// Raft groups (R3 in a cluster, R1 for a lone test node).
//
// # Layout
//
// One log stream, TERN, holds everything an append writes, because an
// append is one JetStream atomic batch (a batch commits all of its
// messages or none, and only within one stream). The stream keeps one
// message per subject (MaxMsgsPerSubject 1), so it is a replicated map
// from subject to value: every event, stream pointer and record has its
// own subject, and a record's newer value replaces the older one.
// Subjects carry a hash partition token <p> (0..Partitions-1) before
// per-user and per-conversation names, so the log can later be split
// into one stream per partition without renaming anything:
//
//	tern.hc.<p>.<cv>            conversation head: "seq id"
//	tern.ha.<p>.<cv>            aux head: n
//	tern.ev.<p>.<cv>.<seq>      event (stored CBOR)
//	tern.ax.<p>.<cv>.<n>        aux event (marks)
//	tern.id.<p>.<ulid>          the event's subject
//	tern.hu.<p>.<uid>           user stream head: us
//	tern.us.<p>.<uid>.<us>      stream entry: the event's subject
//	tern.fl.<p>.<uid>           stream floor after trimming
//	tern.dd.<p>.<hash>          dedupe of (uid, did, cmid): "us subject"
//	tern.mk.<p>.<cv>.<uid>.<k>  marker: upto
//	tern.rx.<p>.<ulid>.<uid>.<k> reaction (a tombstone when cleared)
//	tern.gr.<gid>               group record (JSON)
//	tern.mb.<gid>.<uid>         membership record (JSON)
//	tern.uc.<uid>.<cv>          conversation list entry (tombstone when removed)
//	tern.df.<cv>.<uid>          DM floor of a deleted account
//
// Names that are not plain [A-Za-z0-9_-] tokens (conversation ids have
// colons) are written "=" + base64url.
//
// # Positions
//
// seq and us are gap-free by compare-and-set: each batch carries the new
// head of every counter it advances with Nats-Expected-Last-Subject-
// Sequence set to the head message it read. Two writers that read the
// same head cannot both commit; the loser re-reads and retries. A node
// serialises its own writers on striped locks first, so retries happen
// only between nodes. Heads are records of their own (not the last
// event), so an event that expires (Nats-TTL) or is trimmed never lets a
// position be handed out twice. Nodes tell each other the heads their
// commits moved (sharedheads.go), so a node that lost a race retries with
// the winner's heads at once. An event's id index entry expects no
// earlier message on its subject: ids are unique cluster-wide. A batch
// whose answer was lost may commit late; its retry first looks for it
// and fences it (settle, in log.go), so an append commits at most once.
//
// # Reads
//
// Reads go to the stream leader, so a read after an acknowledged append
// on any node sees it. While a stream's leader leaves reads unanswered
// (its node died and Raft elects another), they go to any replica
// (direct get) until a leader answers again: see route.
//
// # KV buckets
//
// Records that no append touches live in KV buckets: tern-users,
// tern-tokens, tern-contacts (roster and blocks), tern-presence (written
// by compare-and-set on pv, watched by every node), tern-meta
// (cluster-wide counters such as the session epoch, and the
// im/sys/server record), tern-conns (the connection registry,
// im.Connections: one key per user) and tern-compliance (legal holds,
// conversations' own retentions and the trimmer lease; compliance.go).
// Init creates them all (tern cluster init); Open creates what is
// missing.
package jetstore

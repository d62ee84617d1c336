// Package client is a Go client for Tern devices: it speaks the wire
// protocol (PROTOCOL.md) so that device firmware and apps written in Go get
// it right without reading the spec line by line.
//
// A Client keeps one device ({uid}.{did}) connected until its context
// ends:
//
//   - CONNECT with ClientID {uid}.{did}, the password or device token, and
//     the presence will (`{"s":"off"}` on im/up/{uid}/{did}/pres, §3);
//   - SUBSCRIBE im/u/{uid}/d/{did}/#, RPC hello, then sync from the last
//     applied stream position `us` until `more` is false (§9);
//   - hand every stream event to the handler exactly once and in `us`
//     order: live events that skip ahead trigger a sync, redeliveries are
//     dropped;
//   - send messages (and edits, deletes, reactions) through an outbox: each
//     has a cmid, is published in order within a window, and is published
//     again after a reconnect or when its echo is overdue; the server
//     dedupes on cmid, so a message is stored once however often it is
//     sent;
//   - RPCs are correlated by rid and bounded by a timeout;
//   - JSON or CBOR (§13);
//   - on a lost connection it reconnects after a jittered, growing backoff.
//
// The stream position is the device's cursor: persist the US of the last
// event the handler applied (and the US of a Reset) and pass it back as
// Options.Since to resume where the device stopped.
//
// The outbox lives in memory. A device that must not lose unsent messages
// across a restart keeps its own copy and sends them again with the same
// cmid (Outgoing.CMID): the server stores each cmid once.
//
// The handler runs on the client's own goroutine, one event at a time; it
// may call Send, Call and the other methods, but should not block for long.
package client

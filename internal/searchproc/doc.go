// Package searchproc runs the search index (package search) in a child
// process at a low CPU priority, so that indexing takes only the CPU the
// send path leaves: on a small box the broker and its index share a few
// cores, and Go cannot give one goroutine less of them than another,
// while the kernel can do so for a process.
//
// The broker starts the child with Start; the child is the same binary,
// told by the environment variable TERN_SEARCH_WORKER to run Serve
// instead of its usual main (cmd/tern does so first thing, and so must
// the TestMain of any test binary that starts a Worker). The two talk
// net/rpc over two socket pairs handed down as file descriptors 3 and 4:
//
//   - on fd 3 the child serves the index: Search, Joined, Forget, Kick,
//     Wait and Stats;
//   - on fd 4 the parent serves what the index reads of the store: After
//     and EventByID.
//
// So the child never opens the store (Badger allows one process; in
// cluster mode the store is the parent's JetStream connection) and the
// parent never opens the index. The parent restarts a child that died,
// with a growing pause; searches meanwhile fail with ErrUnavailable. A
// child whose parent died sees its sockets close and exits.
package searchproc

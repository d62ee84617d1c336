// Package offstack runs deep work on a short-lived goroutine so that the
// calling goroutine's stack stays small.
//
// mochi parks two goroutines per connected client for the connection's
// whole life. A goroutine's stack grows to fit the deepest call it ever
// made and only shrinks by half per GC, when a GC finds less than a
// quarter of it in use. A publish routed through mochi from a hook on the
// client's read goroutine (presence's retained update at CONNECT, an RPC
// reply) takes that goroutine past 32 KiB, so every idle device kept a
// 64 KiB stack. Run does such calls on a fresh goroutine whose stack is
// freed when it returns, and waits, so callers keep their order and see
// the results.
package offstack

// Run calls f on a new goroutine and returns once f has returned. f must
// not rely on running on the caller's goroutine (no runtime.Goexit, no
// recover of the caller's panics); a panic in f is not recovered.
func Run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

//go:build linearizability

package jetstore

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tern-im/tern/internal/im"
)

// The linearizability check (issue 16): concurrent appends to one
// conversation and reads of its head, through two nodes of a three-node
// cluster, while a randomized schedule steps the stream leader down and
// kills and restarts the third node. porcupine checks that the history
// is linearizable against a counter: an append returns the next seq, a
// read the current one. An append that failed may or may not have
// happened. Run it (longer than the other tests) with
//
//	go test -tags linearizability -run Linearizability -v ./internal/jetstore
//
// or scripts/cluster-check.sh.

type linIn struct{ append bool }

type linOut struct {
	n       uint64
	unknown bool // the append failed: it may or may not have committed
	replica bool // a read made while reads went to any replica (route)
}

var counterModel = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{uint64(0)} },
	Step: func(state, input, output interface{}) []interface{} {
		s, in, out := state.(uint64), input.(linIn), output.(linOut)
		switch {
		case in.append && out.unknown:
			return []interface{}{s, s + 1}
		case in.append && out.n == s+1, !in.append && out.n == s:
			return []interface{}{out.n}
		}
		return nil
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(linIn), output.(linOut)
		if in.append {
			return fmt.Sprintf("append → %d (unknown %v)", out.n, out.unknown)
		}
		return fmt.Sprintf("read → %d", out.n)
	},
}

func TestLinearizability(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	}
	opts := make([]NodeOptions, 3)
	for i := range opts {
		var routes []string
		for j, a := range addrs {
			if j != i {
				routes = append(routes, "nats://"+a)
			}
		}
		opts[i] = NodeOptions{Name: fmt.Sprint("n", i+1), Cluster: "lin", Listen: addrs[i], Routes: routes,
			Dir: t.TempDir(), SyncAlways: true}
	}
	nodes := make([]*Node, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := StartNode(opts[i])
			if err != nil {
				t.Error(err)
				return
			}
			nodes[i] = n
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Shutdown() // node 1 again is harmless
		}
	})
	// Clients on nodes 2 and 3; node 1 is the one that dies.
	var stores []*Store
	for _, n := range nodes[1:] {
		stores = append(stores, openOn(t, n, 3, nil, nil))
	}
	ctl, err := nodes[2].Connect("faults")
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	const run = 20 * time.Second
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	stop := make(chan struct{})
	var mu sync.Mutex
	var history []porcupine.Operation
	var unknown atomic.Int64
	var clients sync.WaitGroup
	for c := range 6 {
		st := stores[c%len(stores)]
		clients.Add(1)
		go func() {
			defer clients.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				op := porcupine.Operation{ClientId: c, Input: linIn{append: i%10 < 7}, Call: now()}
				var out linOut
				if op.Input.(linIn).append {
					a := &im.Append{CV: "g:lin", To: []string{"u"}, Event: im.Event{T: im.TMsg, From: "u", B: "x"}}
					if err := st.Append(a); err != nil {
						out.unknown = true
						unknown.Add(1)
					} else {
						out.n = a.Event.Seq
					}
				} else {
					away := st.logRoute.away(st.opts.LeaderWait)
					n, err := st.ConvSeq("g:lin")
					if err != nil {
						continue // a failed read says nothing
					}
					out.n, out.replica = n, away || st.logRoute.away(st.opts.LeaderWait)
				}
				op.Output, op.Return = out, now()
				if out.unknown {
					op.Return = math.MaxInt64 // it may take effect any time later
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		}()
	}
	// The fault schedule: leader step-downs, and node 1 killed and
	// restarted on its data.
	faults := 0
	deadline := time.After(run)
schedule:
	for {
		select {
		case <-deadline:
			break schedule
		case <-time.After(time.Duration(1000+rng.IntN(2000)) * time.Millisecond):
		}
		faults++
		if rng.IntN(2) == 0 {
			_, err := ctl.Request("$JS.API.STREAM.LEADER.STEPDOWN."+LogStream, nil, 5*time.Second)
			t.Logf("%v: leader step-down (%v)", time.Since(start).Round(time.Millisecond), err)
			continue
		}
		nodes[0].Shutdown()
		t.Logf("%v: node 1 down", time.Since(start).Round(time.Millisecond))
		<-time.After(time.Duration(500+rng.IntN(2000)) * time.Millisecond) // how long the fault lasts
		n, err := StartNode(opts[0])
		if err != nil {
			t.Fatalf("restart node 1: %v", err)
		}
		nodes[0] = n
		t.Logf("%v: node 1 up", time.Since(start).Round(time.Millisecond))
	}
	close(stop)
	clients.Wait()
	nodes[0].Shutdown()

	res, info := porcupine.CheckOperationsVerbose(counterModel.ToModel(), history, time.Minute)
	var unsure, adopted int64
	for _, st := range stores {
		unsure, adopted = unsure+st.unsure.Load(), adopted+st.adopted.Load()
	}
	t.Logf("%d operations (%d appends of unknown outcome), %d faults, %d attempts settled (%d had committed): %s",
		len(history), unknown.Load(), faults, unsure, adopted, res)
	if res == porcupine.Illegal {
		for _, line := range explainCounter(history) {
			t.Log(line)
		}
		t.Fatalf("the history is not linearizable (%d partial linearizations)", len(info.PartialLinearizations()))
	}
	if res != porcupine.Ok {
		t.Errorf("porcupine could not decide within a minute (%s)", res)
	}
	// And the conversation is gap-free.
	page, _, err := stores[0].History(im.HistoryQuery{CV: "g:lin", Window: im.Open, Max: math.MaxInt32})
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range page {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("history: event %d has seq %d", i, ev.Seq)
		}
	}
}

// explainCounter names what makes a counter history illegal, for the log
// of a failed check, at most ten lines of each kind: a seq two appends
// returned, or none did below one that was; a read or an append that
// went below what an operation that had returned before it was called
// saw (a stale read, an append that went back, a read that went back);
// and a read of a seq whose append was called only after the read
// returned.
func explainCounter(history []porcupine.Operation) []string {
	var out []string
	counts := map[string]int{}
	note := func(kind, format string, args ...any) {
		if counts[kind]++; counts[kind] <= 10 {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	n := func(op porcupine.Operation) uint64 { return op.Output.(linOut).n }
	var appends, reads []porcupine.Operation
	by := map[uint64]porcupine.Operation{}
	var top uint64
	for _, op := range history {
		in, o := op.Input.(linIn), op.Output.(linOut)
		switch {
		case !in.append:
			reads = append(reads, op)
		case !o.unknown:
			if prev, ok := by[o.n]; ok {
				note("twice", "seq %d returned twice: client %d [%d, %d] and client %d [%d, %d]",
					o.n, prev.ClientId, prev.Call, prev.Return, op.ClientId, op.Call, op.Return)
			}
			by[o.n], top = op, max(top, o.n)
			appends = append(appends, op)
		}
	}
	for k := uint64(1); k < top; k++ {
		if _, ok := by[k]; !ok {
			note("gap", "seq %d was never returned, %d was", k, top)
		}
	}
	replica := func(op porcupine.Operation) bool { return op.Output.(linOut).replica }
	sweep(appends, reads, func(r, a porcupine.Operation) {
		if n(a) > n(r) {
			note("stale", "stale read: client %d read %d at [%d, %d] (replica %v), after client %d's append returned %d at %d",
				r.ClientId, n(r), r.Call, r.Return, replica(r), a.ClientId, n(a), a.Return)
		}
	})
	sweep(appends, appends, func(op, a porcupine.Operation) {
		if n(a) > n(op) {
			note("append back", "append went back: client %d got %d at [%d, %d], after client %d got %d at [%d, %d]",
				op.ClientId, n(op), op.Call, op.Return, a.ClientId, n(a), a.Call, a.Return)
		}
	})
	sweep(reads, reads, func(op, r porcupine.Operation) {
		if n(r) > n(op) {
			note("read back", "read went back: client %d read %d at [%d, %d] (replica %v), after client %d read %d at [%d, %d] (replica %v)",
				op.ClientId, n(op), op.Call, op.Return, replica(op), r.ClientId, n(r), r.Call, r.Return, replica(r))
		}
	})
	for _, r := range reads {
		if a, ok := by[n(r)]; ok && a.Call > r.Return {
			note("future", "read from the future: client %d read %d at [%d, %d] (replica %v), its append was called at %d",
				r.ClientId, n(r), r.Call, r.Return, replica(r), a.Call)
		}
	}
	for _, kind := range []string{"twice", "gap", "stale", "append back", "read back", "future"} {
		if counts[kind] > 10 {
			out = append(out, fmt.Sprintf("%d lines of kind %q in all", counts[kind], kind))
		}
	}
	if len(out) == 0 {
		out = append(out, "none of these: the violation is in the order of concurrent operations")
	}
	return out
}

// sweep calls visit for each operation q of queries with the operation
// of before that returned the largest n before q was called, if any.
func sweep(before, queries []porcupine.Operation, visit func(q, best porcupine.Operation)) {
	byReturn := slices.SortedFunc(slices.Values(before), func(a, b porcupine.Operation) int { return cmp.Compare(a.Return, b.Return) })
	byCall := slices.SortedFunc(slices.Values(queries), func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	var best porcupine.Operation
	i := 0
	for _, q := range byCall {
		for ; i < len(byReturn) && byReturn[i].Return < q.Call; i++ {
			if best.Output == nil || byReturn[i].Output.(linOut).n > best.Output.(linOut).n {
				best = byReturn[i]
			}
		}
		if best.Output != nil {
			visit(q, best)
		}
	}
}

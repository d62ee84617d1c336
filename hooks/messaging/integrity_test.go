package messaging_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// nested returns a value nested n levels deep: {"a":{"a":…1…}}.
func nested(n int) any {
	var v any = 1
	for range n {
		v = map[string]any{"a": v}
	}
	return v
}

// errMsg reads the next err event and returns its code and msg.
func errMsg(d *dev) (int, string) {
	d.t.Helper()
	var e struct {
		T    string `json:"t"`
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := json.Unmarshal(d.wait(d.rpc, "err event"), &e); err != nil || e.T != "err" {
		d.t.Fatalf("err event: %v %+v", err, e)
	}
	return e.Code, e.Msg
}

// TestE2ESchema is the regression of issue 9 item 4: an e2e that is nested
// or large beyond the schema is refused with 400 naming the field (on main
// it was acknowledged, delivered, and then broke the recipient's sync,
// history and conv.list with 500), and a well-formed one travels and reads
// back through all three.
func TestE2ESchema(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a, bb := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")

	// One wrapped key more than the schema allows, in CBOR (in JSON it
	// would already exceed the payload limit).
	many := map[string][]byte{}
	for i := range codec.MaxE2EKeys + 1 {
		many["b.d"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676))] = []byte{1}
	}
	wide, err := cbor.Marshal(map[string]any{"to": "bob", "cmid": "c2", "b": "x", "e2e": many})
	if err != nil {
		t.Fatal(err)
	}
	deepCBOR, err := cbor.Marshal(map[string]any{"to": "bob", "cmid": "c3", "b": "x", "e2e": nested(20)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"deep json", mustJSON(t, map[string]any{"to": "bob", "cmid": "c1", "b": "x", "e2e": nested(20)})},
		{"wide cbor", wide},
		{"deep cbor", deepCBOR},
		{"array json", mustJSON(t, map[string]any{"to": "bob", "cmid": "c4", "b": "x", "e2e": map[string]any{"bob.b1": make([]int, 5000)}})},
		{"bad device key", mustJSON(t, map[string]any{"to": "bob", "cmid": "c5", "b": "x", "e2e": map[string]string{"bob": "00"}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.t = t
			a.pub(topics.UpMsg, tc.payload)
			code, msg := errMsg(a)
			if code != 400 {
				t.Fatalf("code %d (%s), want 400", code, msg)
			}
			if tc.name != "deep cbor" && !strings.Contains(msg, "e2e") {
				t.Fatalf("msg %q does not name e2e", msg)
			}
		})
	}
	a.t = t
	bb.none(bb.in, "refused message")

	// A well-formed E2EE message is stored, delivered and read back.
	a.send(map[string]any{"to": "bob", "cmid": "ok", "b": "ciphertext", "ct": "application/vnd.tern.e2ee",
		"e2e": map[string]string{"bob.b1": "00ff", "alice.p1": "0a0b"}})
	if ev := bb.next(); len(ev.E2E) != 2 || string(ev.E2E["bob.b1"]) != "\x00\xff" {
		t.Fatalf("live: %+v", ev)
	}
	if evs := bb.syncAll(0, 10); len(evs) != 1 || len(evs[0].E2E) != 2 {
		t.Fatalf("sync: %+v", evs)
	}
	var h codec.HistoryResult
	bb.ok("history", map[string]any{"cv": "d:alice:bob"}, &h)
	if len(h.Items) != 1 || len(h.Items[0].E2E) != 2 {
		t.Fatalf("history: %+v", h)
	}
	var cl codec.ConvListResult
	bb.ok("conv.list", nil, &cl)
	if len(cl.Convs) != 1 || cl.Convs[0].Last == nil {
		t.Fatalf("conv.list: %+v", cl)
	}
}

// TestUnreadableRecordSkipped: records written in the shape main accepted
// (an e2e nested beyond the read limits) are skipped by sync, history and
// conv.list, which still return the others and advance past them (on main
// each answered 500). The records are counted.
func TestUnreadableRecordSkipped(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	users(b, "alice", "bob")
	a, bb := connect(t, b, "alice", "p1"), connect(t, b, "bob", "b1")
	for _, m := range []string{"one", "two", "three"} {
		a.text("bob", m, m)
		bb.next()
	}
	// Overwrite seqs 2 and 3 (the newest) with the old bad shape.
	for seq := uint64(2); seq <= 3; seq++ {
		bad, err := cbor.Marshal(map[string]any{"t": "msg", "cv": "d:alice:bob", "seq": seq, "from": "alice", "b": "x", "e2e": nested(20)})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Store().PutRawEvent("d:alice:bob", seq, bad); err != nil {
			t.Fatal(err)
		}
	}
	before := b.Store().Unreadable()

	// sync, one event a page: the cursor walks past the bad ones to the head.
	var got []string
	since := uint64(0)
	for range 10 {
		var r codec.SyncResult
		bb.ok("sync", map[string]any{"since": since, "max": 1}, &r)
		for _, ev := range r.Ev {
			got = append(got, ev.B)
		}
		since = r.Next
		if !r.More {
			break
		}
	}
	head, err := b.Store().USHead("bob")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "one" || since != head {
		t.Fatalf("sync got %v next %d, want [one] next %d", got, since, head)
	}
	var h codec.HistoryResult
	bb.ok("history", map[string]any{"cv": "d:alice:bob", "max": 1}, &h)
	if len(h.Items) != 1 || h.Items[0].B != "one" || !h.Complete {
		t.Fatalf("history: %+v", h)
	}
	var cl codec.ConvListResult
	bb.ok("conv.list", nil, &cl)
	if len(cl.Convs) != 1 || cl.Convs[0].Last == nil || cl.Convs[0].Last.B != "one" || cl.Convs[0].Seq != 3 {
		t.Fatalf("conv.list: %+v", cl)
	}
	n := b.Store().Unreadable()
	if n <= before {
		t.Fatalf("unreadable count %d, want > %d", n, before)
	}
	resp, err := http.Get(b.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("tern_store_unreadable_records_total %d\n", n); !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %q", want)
	}
	// New messages still flow.
	a.text("bob", "four", "four")
	if ev := bb.next(); ev.B != "four" || ev.Seq != 4 {
		t.Fatalf("after: %+v", ev)
	}
}

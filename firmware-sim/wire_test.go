package firmwaresim

import (
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	id := []byte{0x01, 0x93, 0x7e, 0x3a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a}
	cb, err := cbor.Marshal(map[string]any{"t": "msg", "us": 48213, "id": id, "cv": "g:ops", "seq": 1234,
		"from": "alice", "fd": "p1", "ts": 1732262400123, "cmid": "c-17", "b": "on my way"})
	if err != nil {
		t.Fatal(err)
	}
	js := []byte(` {"t":"msg","us":48213,"id":"01J9Z3K8Q4W6X2M7N5P0R8T1VB","cv":"g:ops","seq":1234,"from":"alice","fd":"p1","ts":1732262400123,"cmid":"c-17","b":"on my way"}`)
	for name, p := range map[string][]byte{"json": js, "cbor": cb} {
		var ev Event
		if err := unmarshal(p, &ev); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ev.T != "msg" || ev.US != 48213 || ev.Seq != 1234 || ev.CV != "g:ops" || ev.From != "alice" ||
			ev.FD != "p1" || ev.CMID != "c-17" || ev.B != "on my way" || ev.ID == "" {
			t.Errorf("%s: %+v", name, ev)
		}
	}
}

func TestDecodeReply(t *testing.T) {
	t.Parallel()
	ok := []byte(`{"rid":"r1","ok":true,"r":{"ev":[{"t":"msg","us":1}],"next":1,"more":true}}`)
	rep, err := decodeReply(ok)
	if err != nil || rep.RID != "r1" || !rep.OK {
		t.Fatalf("%+v %v", rep, err)
	}
	var sr syncResult
	if err := rep.Result(&sr); err != nil || len(sr.Ev) != 1 || sr.Next != 1 || !sr.More {
		t.Fatalf("%+v %v", sr, err)
	}
	cb, err := cbor.Marshal(map[string]any{"rid": "r2", "ok": false, "err": map[string]any{"code": 404, "msg": "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = decodeReply(cb)
	if err != nil || rep.OK || rep.Err == nil || rep.Err.Code != 404 {
		t.Fatalf("%+v %v", rep, err)
	}
	cb, err = cbor.Marshal(map[string]any{"rid": "r3", "ok": true, "r": map[string]any{"next": 7, "more": false}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = decodeReply(cb)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Result(&sr); err != nil || sr.Next != 7 || sr.More {
		t.Fatalf("%+v %v", sr, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"t":"msg","us":1,"id":"x"}`))
	f.Add([]byte(`{"rid":"r1","ok":true,"r":{}}`))
	f.Add([]byte{0xa1, 0x62, 0x69, 0x64, 0x41, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		// Error or value, never a panic.
		var ev Event
		if err := unmarshal(p, &ev); err != nil {
			return
		}
		rep, err := decodeReply(p)
		if err != nil {
			return
		}
		var sr syncResult
		if err := rep.Result(&sr); err != nil {
			return
		}
	})
}

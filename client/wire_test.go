package client

import (
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/tern-im/tern/internal/codec"
)

func TestDecodeReply(t *testing.T) {
	t.Parallel()
	rep, err := decodeReply([]byte(`{"rid":"r1","ok":true,"r":{"next":7,"more":true}}`))
	if err != nil || rep.RID != "r1" || !rep.OK || rep.cbor {
		t.Fatalf("%+v %v", rep, err)
	}
	var sr codec.SyncResult
	if err := rep.result(&sr); err != nil || sr.Next != 7 || !sr.More {
		t.Fatalf("%+v %v", sr, err)
	}
	cb, err := cbor.Marshal(map[string]any{"rid": "r2", "ok": false, "err": map[string]any{"code": 404, "msg": "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err = decodeReply(cb); err != nil || rep.OK || rep.Err == nil || rep.Err.Code != 404 || !rep.cbor {
		t.Fatalf("%+v %v", rep, err)
	}
	cb, err = cbor.Marshal(map[string]any{"rid": "r3", "ok": true, "r": map[string]any{"next": 9}})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err = decodeReply(cb); err != nil {
		t.Fatal(err)
	}
	if err := rep.result(&sr); err != nil || sr.Next != 9 {
		t.Fatalf("%+v %v", sr, err)
	}
	rep, err = decodeReply([]byte(`{"t":"err","cmid":"c1","code":413,"msg":"body too large"}`))
	if err != nil || rep.T != "err" || rep.CMID != "c1" || rep.Code != 413 {
		t.Fatalf("%+v %v", rep, err)
	}
	for _, bad := range []string{"", "{", `{"rid":1}`, "\xff"} {
		if _, err := decodeReply([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDecodeEph(t *testing.T) {
	t.Parallel()
	e, err := decodeEph([]byte(`{"t":"typ","cv":"d:a:b","from":"a","s":"c","ttl":8}`))
	if ty, ok := e.(*Typing); err != nil || !ok || ty.From != "a" || ty.CV != "d:a:b" || ty.S != "c" || ty.TTL != 8 {
		t.Fatalf("%#v %v", e, err)
	}
	e, err = decodeEph([]byte(`{"t":"pres","uid":"bob","s":"away","pv":3,"ls":5,"d":1,"tx":"out"}`))
	if p, ok := e.(*Presence); err != nil || !ok || p.UID != "bob" || p.S != "away" || p.PV != 3 || p.D != 1 || p.TX != "out" {
		t.Fatalf("%#v %v", e, err)
	}
	if _, err := decodeEph([]byte(`{"t":"what"}`)); err == nil {
		t.Fatal("unknown type accepted")
	}
}

// FuzzDecode feeds arbitrary downstream payloads to every decoder of the
// package: an error or a value, never a panic; a stream event always
// converts to a typed event.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"t":"msg","us":1,"id":"01J9Z3K8Q4W6X2M7N5P0R8T1VB","b":"x"}`))
	f.Add([]byte(`{"rid":"r1","ok":true,"r":{"ev":[{"t":"msg","us":1}],"next":1}}`))
	f.Add([]byte(`{"t":"typ","cv":"d:a:b","from":"a","s":"c"}`))
	f.Add([]byte(`{"t":"pres","uid":"a","s":"on","pv":1}`))
	f.Add([]byte{0xa2, 0x63, 'r', 'i', 'd', 0x62, 'r', '1', 0x62, 'o', 'k', 0xf5})
	f.Fuzz(func(t *testing.T, p []byte) {
		if rep, err := decodeReply(p); err == nil {
			var sr codec.SyncResult
			if rep.result(&sr) == nil {
				for i := range sr.Ev {
					if fromCodec(&sr.Ev[i]).Stream().US != sr.Ev[i].US {
						t.Fatal("us lost in conversion")
					}
				}
			}
		}
		if e, err := decodeEph(p); err == nil && e == nil {
			t.Fatal("no error and no event")
		}
		var ev codec.Event
		if codec.Decode(p, &ev) == nil && fromCodec(&ev) == nil {
			t.Fatal("no typed event")
		}
	})
}

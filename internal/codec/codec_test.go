package codec

import (
	"bytes"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

func TestDecodeUp(t *testing.T) {
	t.Parallel()
	id := ulid.MustParse("01J9Z3K8Q4W6X2M7N5P0R8T1VB")
	cb, err := Encode(map[string]any{"op": "edit", "id": id[:], "cmid": "c", "b": "x"}, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    Up
		wantErr bool
	}{
		{"json", []byte(`{"to":"bob","cmid":"c-17","b":"on my way"}`), Up{To: "bob", CMID: "c-17", B: "on my way"}, false},
		{"json leading space", []byte("\n {\"to\":\"bob\"}"), Up{To: "bob"}, false},
		{"json id", []byte(`{"op":"del","id":"01J9Z3K8Q4W6X2M7N5P0R8T1VB","cmid":"c"}`), Up{Op: "del", ID: &id, CMID: "c"}, false},
		{"cbor id bytes", cb, Up{Op: "edit", ID: &id, CMID: "c", B: "x"}, false},
		{"bad id", []byte(`{"id":"zzz"}`), Up{}, true},
		{"trailing", []byte(`{"to":"a"}{}`), Up{}, true},
		{"empty", nil, Up{}, true},
		{"cbor garbage", []byte{0xff, 0xfe}, Up{}, true},
		{"json array", []byte(`[]`), Up{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Up
			err := Decode(tc.in, &got)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v want %+v", got, tc.want)
			}
		})
	}
}

func TestRequestArgs(t *testing.T) {
	t.Parallel()
	for _, in := range [][]byte{
		[]byte(`{"rid":"r1","op":"sync","a":{"since":5,"max":10}}`),
		mustEncode(t, map[string]any{"rid": "r1", "op": "sync", "a": map[string]any{"since": 5, "max": 10}}),
	} {
		r, err := DecodeRequest(in)
		if err != nil || r.RID != "r1" || r.Op != "sync" {
			t.Fatalf("request %+v %v", r, err)
		}
		var a SyncArgs
		if err := r.Args(&a); err != nil || a.Since != 5 || a.Max != 10 {
			t.Fatalf("args %+v %v", a, err)
		}
	}
	r, err := DecodeRequest([]byte(`{"rid":"r2","op":"conv.list"}`))
	if err != nil {
		t.Fatal(err)
	}
	var a SyncArgs
	if err := r.Args(&a); err != nil {
		t.Fatalf("absent args: %v", err)
	}
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := Encode(v, true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecodeUp: any payload decodes to an error or a value whose
// re-encoding is stable in both encodings.
func FuzzDecodeUp(f *testing.F) {
	f.Add([]byte(`{"to":"bob","cmid":"c-17","b":"on my way","ttl":5,"mn":["a"]}`))
	f.Add([]byte(`{"op":"react","id":"01J9Z3K8Q4W6X2M7N5P0R8T1VB","k":"x","cmid":"c"}`))
	f.Add([]byte(`{"to":"g:ops","cmid":"1","att":[{"fid":"x","h":"00ff"}],"e2e":{"k":[1,2]}}`))
	f.Add([]byte{0xa2, 0x62, 0x74, 0x6f, 0x63, 0x62, 0x6f, 0x62, 0x61, 0x62, 0x61, 0x78})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		var up Up
		if err := Decode(p, &up); err != nil {
			return
		}
		for _, cb := range []bool{false, true} {
			b1, err := Encode(&up, cb)
			if err != nil {
				return // e.g. a NaN inside e2e cannot be JSON
			}
			var back Up
			if err := Decode(b1, &back); err != nil {
				if !cb {
					return // JSON cannot carry every CBOR value (byte strings in e2e)
				}
				t.Fatalf("re-decode (cbor=%v): %v\n%x", cb, err, b1)
			}
			b2, err := Encode(&back, cb)
			if err != nil || !bytes.Equal(b1, b2) {
				t.Fatalf("unstable round trip (cbor=%v): %v\n%x\n%x", cb, err, b1, b2)
			}
		}
	})
}

// FuzzRequestArgs: any RPC request decodes, with every op's arguments,
// to an error or a value; never a panic.
func FuzzRequestArgs(f *testing.F) {
	f.Add([]byte(`{"rid":"r1","op":"history","a":{"cv":"g:ops","before":10,"max":50}}`))
	f.Add([]byte(`{"rid":"r1","op":"group.create","a":{"name":"x","members":["a","b"]}}`))
	f.Add([]byte(`{"rid":"r1","op":"hello","a":{"enc":"cbor","maxPkt":1024,"feat":{"typing":false}}}`))
	f.Add([]byte(`{"rid":"r1","op":"conv.set","a":{"cv":"g:ops","retention":86400}}`))
	f.Add([]byte{0xa3, 0x63, 0x72, 0x69, 0x64, 0x61, 0x31, 0x62, 0x6f, 0x70, 0x61, 0x78, 0x61, 0x61, 0xf6})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeRequest(p)
		if err != nil {
			return
		}
		for _, a := range []any{&HelloArgs{}, &SyncArgs{}, &HistoryArgs{}, &IDArgs{}, &UIDArgs{}, &GroupArgs{}, &ConvSetArgs{}} {
			if err := r.Args(a); err != nil {
				continue
			}
			for _, cb := range []bool{false, true} {
				b, err := Encode(a, cb)
				if err != nil {
					t.Fatalf("encode %T: %v", a, err)
				}
				back := reflect.New(reflect.TypeOf(a).Elem()).Interface()
				if err := Decode(b, back); err != nil || !reflect.DeepEqual(a, back) {
					t.Fatalf("round trip %T (cbor=%v): %v\n%+v\n%+v", a, cb, err, a, back)
				}
			}
		}
	})
}

// FuzzEventRoundTrip: events survive both encodings and the stored form.
func FuzzEventRoundTrip(f *testing.F) {
	f.Add("msg", uint64(1), []byte("0123456789abcdef"), "d:a:b", "alice", "hi", "c-1", int64(1732262400123), true, []byte{1, 2})
	f.Fuzz(func(t *testing.T, typ string, n uint64, id []byte, cv, from, body, cmid string, ts int64, trunc bool, h []byte) {
		for _, s := range []string{typ, cv, from, body, cmid} {
			if !utf8.ValidString(s) {
				return
			}
		}
		var uid ulid.ULID
		copy(uid[:], id)
		ev := Event{T: typ, US: n, ID: uid, CV: cv, Seq: n / 2, From: from, TS: ts, B: body, CMID: cmid, Trunc: trunc, Re: &uid,
			Att: []Att{{FID: cmid, Z: ts, H: Bin(h)}}, Mn: []string{from}}
		if len(h) == 0 {
			ev.Att[0].H = nil
		}
		for _, cb := range []bool{false, true} {
			b, err := Encode(&ev, cb)
			if err != nil {
				t.Fatal(err)
			}
			var back Event
			if err := Decode(b, &back); err != nil {
				if !cb && !IsJSON(b) {
					t.Fatalf("json event does not start with {: %s", b)
				}
				t.Fatalf("decode (cbor=%v): %v", cb, err)
			}
			if !reflect.DeepEqual(ev, back) {
				t.Fatalf("round trip (cbor=%v):\n%+v\n%+v", cb, ev, back)
			}
		}
		st, err := MarshalStored(&ev)
		if err != nil {
			t.Fatal(err)
		}
		var back Event
		if err := UnmarshalStored(st, &back); err != nil || !reflect.DeepEqual(ev, back) {
			t.Fatalf("stored round trip: %v", err)
		}
	})
}

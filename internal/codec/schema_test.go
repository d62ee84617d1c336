package codec

import (
	"strings"
	"testing"
)

func TestUpCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, payload, field string
	}{
		{"ok", `{"to":"bob","cmid":"c","b":"x","e2e":{"bob.b1":"00ff"}}`, ""},
		{"nested e2e", `{"to":"bob","cmid":"c","e2e":{"bob.b1":{"a":1}}}`, "e2e"},
		{"array e2e", `{"to":"bob","cmid":"c","e2e":[1,2]}`, "e2e"},
		{"e2e key", `{"to":"bob","cmid":"c","e2e":{"bob":"00"}}`, "e2e"},
		{"e2e empty key", `{"to":"bob","cmid":"c","e2e":{"bob.b1":""}}`, "e2e"},
		{"e2e not hex", `{"to":"bob","cmid":"c","e2e":{"bob.b1":"zz"}}`, "e2e"},
		{"mention", `{"to":"bob","cmid":"c","mn":["A B"]}`, "mn"},
		{"att", `{"to":"bob","cmid":"c","att":[{"fid":"x","z":-1}]}`, "att"},
		{"op", `{"op":"zap","cmid":"c"}`, "op"},
		{"cmid", `{"to":"bob"}`, "cmid"},
		{"ttl", `{"to":"bob","cmid":"c","ttl":-1}`, "ttl"},
		{"wrong type", `{"to":5,"cmid":"c"}`, "to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var up Up
			err := Decode([]byte(tc.payload), &up)
			if err == nil {
				err = up.Check(8 << 10)
			}
			if got := Field(err); got != tc.field || (tc.field == "") != (err == nil) {
				t.Fatalf("err %v (field %q), want field %q", err, got, tc.field)
			}
		})
	}
}

// FuzzUpSchema: any payload decodes and checks to an error or a valid
// command, never a panic; and whatever the schema accepts, stored as an
// event, decodes again with the read limits.
func FuzzUpSchema(f *testing.F) {
	f.Add([]byte(`{"to":"bob","cmid":"c","b":"x","e2e":{"bob.b1":"00ff","al.p":"0a"}}`))
	f.Add([]byte(`{"to":"g:ops","cmid":"1","att":[{"fid":"x","h":"00ff"}],"mn":["a","b"]}`))
	f.Add([]byte(`{"to":"bob","cmid":"c","e2e":{"a.b":{"a":{"a":{"a":1}}}}}`))
	f.Add([]byte(`{"to":"bob","cmid":"c","e2e":{"bob.b1":"` + strings.Repeat("ab", 600) + `"}}`))
	f.Add([]byte{0xa3, 0x62, 0x74, 0x6f, 0x63, 0x62, 0x6f, 0x62, 0x64, 0x63, 0x6d, 0x69, 0x64, 0x61, 0x31, 0x63, 0x65, 0x32, 0x65, 0xa1, 0x63, 0x61, 0x2e, 0x62, 0x41, 0x01})
	f.Fuzz(func(t *testing.T, p []byte) {
		var up Up
		if err := Decode(p, &up); err != nil {
			return
		}
		if err := up.Check(8 << 10); err != nil {
			if Field(err) == "" {
				t.Fatalf("check error names no field: %v", err)
			}
			return
		}
		ev := Event{T: TMsg, CV: "d:a:b", Seq: 1, From: "a", FD: "p", TS: 1, CMID: up.CMID, CT: up.CT, B: up.B,
			Re: up.Re, Th: up.Th, Att: up.Att, Mn: up.Mn, TTL: up.TTL, E2E: up.E2E, CTS: up.CTS, K: up.K}
		stored, err := MarshalStored(&ev)
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		var back Event
		if err := UnmarshalStored(stored, &back); err != nil {
			t.Fatalf("accepted command does not read back: %v\n%q", err, p)
		}
		again, err := MarshalStored(&back)
		if err != nil || string(again) != string(stored) {
			t.Fatalf("unstable stored round trip: %v", err)
		}
		for _, cb := range []bool{false, true} {
			if _, err := Encode(&back, cb); err != nil {
				t.Fatalf("encode downstream (cbor=%v): %v", cb, err)
			}
		}
	})
}

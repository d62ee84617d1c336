package presence

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseOp(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxText+1)
	for _, tc := range []struct {
		name string
		in   string
		want op
		err  error
	}{
		{"off", `{"s":"off"}`, op{S: Off}, nil},
		{"away with text", ` {"s":"away","tx":"lunch","x":1}`, op{S: Away, TX: "lunch", HasTX: true}, nil},
		{"text only", `{"tx":""}`, op{HasTX: true}, nil},
		{"busy", `{"s":"busy"}`, op{S: Busy}, nil},
		{"unknown status", `{"s":"sleeping"}`, op{}, ErrStatus},
		{"empty status", `{"s":""}`, op{}, ErrStatus},
		{"nothing", `{}`, op{}, ErrEmptyOp},
		{"null", `{"s":null}`, op{}, ErrEmptyOp},
		{"wrong type", `{"s":1}`, op{}, ErrPayload},
		{"text too long", `{"tx":"` + long + `"}`, op{}, ErrText},
		{"not json", `off`, op{}, ErrPayload},
		{"truncated", `{"s":"of`, op{}, ErrPayload},
		{"empty", ``, op{}, ErrPayload},
		// CBOR: {"s":"away","tx":"lunch"}
		{"cbor", "\xa2\x61s\x64away\x62tx\x65lunch", op{S: Away, TX: "lunch", HasTX: true}, nil},
		// {"s":"off","n":7,"b":h'00'}
		{"cbor other keys", "\xa3\x61s\x63off\x61n\x07\x61b\x41\x00", op{S: Off}, nil},
		{"cbor truncated", "\xa1\x61s\x63of", op{}, ErrPayload},
		{"cbor trailing", "\xa1\x61s\x63off\x00", op{}, ErrPayload},
		{"cbor s not text", "\xa1\x61s\x43off", op{}, ErrStatus},
		{"cbor nested", "\xa1\x61x\xa0", op{}, ErrPayload},
		{"cbor indefinite", "\xbf\x61s\x63off\xff", op{}, ErrPayload},
		{"cbor bad utf8", "\xa1\x62tx\x61\xff", op{}, ErrText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseOp([]byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("parseOp(%q) error %v, want %v", tc.in, err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("parseOp(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParseOp(f *testing.F) {
	for _, s := range []string{`{"s":"off"}`, `{"s":"away","tx":"x"}`, `{"tx":""}`,
		"\xa2\x61s\x64away\x62tx\x65lunch", "\xa1\x61s\x63off", "\xbb\xff\xff\xff\xff\xff\xff\xff\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := parseOp(b)
		if err != nil {
			return
		}
		switch o.S {
		case "", On, Off, Away, Busy:
		default:
			t.Fatalf("status %q accepted", o.S)
		}
		if len(o.TX) > MaxText || (o.S == "" && !o.HasTX) {
			t.Fatalf("accepted %+v", o)
		}
		// Round trip through JSON.
		v := map[string]string{}
		if o.S != "" {
			v["s"] = o.S
		}
		if o.HasTX {
			v["tx"] = o.TX
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := parseOp(j); err != nil || back != o {
			t.Fatalf("round trip %s = %+v, %v; want %+v", j, back, err, o)
		}
	})
}

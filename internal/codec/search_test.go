package codec_test

import (
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
)

// TestSearchResultRoundTrip: an item is the event's keys and hl side by
// side, in JSON and in CBOR.
func TestSearchResultRoundTrip(t *testing.T) {
	t.Parallel()
	id := ulid.Make()
	in := codec.SearchResult{Items: []codec.SearchItem{{
		Event: codec.Event{T: codec.TMsg, ID: id, CV: "d:alice:bob", Seq: 3, From: "alice", B: "on my way"},
		HL:    "on my <mark>way</mark>",
	}}, Next: id.String()}
	for _, cbor := range []bool{false, true} {
		b, err := codec.Encode(&in, cbor)
		if err != nil {
			t.Fatal(err)
		}
		var flat map[string]any
		var out codec.SearchResult
		if err := codec.Decode(b, &out); err != nil {
			t.Fatalf("cbor %v: %v", cbor, err)
		}
		if len(out.Items) != 1 || out.Items[0].ID != id || out.Items[0].B != "on my way" || out.Items[0].HL != in.Items[0].HL || out.Next != in.Next {
			t.Errorf("cbor %v: round trip gave %+v", cbor, out)
		}
		if err := codec.Decode(b, &flat); err != nil {
			t.Fatal(err)
		}
		item := flat["items"].([]any)[0].(map[string]any)
		if item["hl"] == nil || item["b"] == nil || item["Event"] != nil {
			t.Errorf("cbor %v: item keys %v, want the event's and hl at one level", cbor, item)
		}
	}
}

package client

import (
	"testing"
)

// FuzzFileChunk: any topic rest and payload handed to the download router
// is either routed to the download of its fid or dropped, never a panic.
func FuzzFileChunk(f *testing.F) {
	f.Add("f/01J9Z3K8Q4W6X2M7N5P0R8T1VB/3", []byte("abc"))
	f.Add("f/x/-1", []byte{})
	f.Add("f//", []byte(nil))
	f.Fuzz(func(t *testing.T, rest string, payload []byte) {
		c := &Client{downloads: map[string]*download{}}
		d := &download{got: map[int][]byte{}, ch: make(chan struct{}, 1)}
		c.downloads["01J9Z3K8Q4W6X2M7N5P0R8T1VB"] = d
		c.fileChunk(rest, payload)
		for i, b := range d.got {
			if want := "f/01J9Z3K8Q4W6X2M7N5P0R8T1VB/"; len(rest) <= len(want) || rest[:len(want)] != want {
				t.Fatalf("%q routed to chunk %d", rest, i)
			}
			if string(b) != string(payload) {
				t.Fatalf("chunk %d = %q, want %q", i, b, payload)
			}
		}
	})
}

package store

import (
	"testing"

	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/files/filestest"
)

// TestFileMeta runs the files.Meta conformance suite against Badger.
func TestFileMeta(t *testing.T) {
	filestest.Run(t, func(t *testing.T) files.Meta {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		return s.FileMeta()
	})
}

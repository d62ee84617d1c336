package files_test

import (
	"testing"

	"github.com/tern-im/tern/internal/files"
	"github.com/tern-im/tern/internal/files/filestest"
)

// TestDiskContent runs the files.Content conformance suite against the
// single-node disk tree (internal/jetstore runs it against JetStream).
func TestDiskContent(t *testing.T) {
	filestest.RunContent(t, func(t *testing.T) files.Content {
		d, err := files.NewDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

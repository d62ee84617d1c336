package filestest

import (
	"testing"

	"github.com/tern-im/tern/internal/files"
)

func TestMem(t *testing.T) {
	Run(t, func(*testing.T) files.Meta { return NewMem() })
}

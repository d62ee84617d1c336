// Package buildinfo reports what this binary is: Tern's version, the VCS
// commit it was built from and the Go version, from
// runtime/debug.ReadBuildInfo. `tern version` prints it and /metrics
// exports it as tern_build_info.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Version is the Tern release this source tree is.
const Version = "0.1.0"

// Info describes the running binary.
type Info struct {
	Version   string // Tern release
	Commit    string // VCS revision ("unknown" without VCS stamping), "+dirty" when modified
	GoVersion string // e.g. go1.26.8
}

// Read returns the binary's build information.
func Read() Info {
	in := Info{Version: Version, Commit: "unknown", GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	in.GoVersion = bi.GoVersion
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && in.Commit != "unknown" {
		in.Commit += "+dirty"
	}
	return in
}

// String is the one-line form `tern version` prints.
func (i Info) String() string {
	return fmt.Sprintf("tern %s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}

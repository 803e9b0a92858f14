// Package buildinfo says which collabsync a binary is: its release version
// (a git tag, set at build time), and what Go recorded when it built it
// (the commit, its time, whether the tree was modified, the Go version).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time (make build: -ldflags -X) where Go records no VCS
// information (GOFLAGS=-buildvcs=false, a tarball).
var revision, commitTime string

// Info describes a binary.
type Info struct {
	Version   string // v1.2.3, or what the build was given; "dev" unset
	Revision  string // the commit, 12 hex digits; "" when not recorded
	Time      string // the commit's time (RFC 3339)
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string
}

// Read returns the running binary's info; version is what the build set
// (-ldflags -X), "dev" when nothing did.
func Read(version string) Info {
	i := Info{Version: version, GoVersion: runtime.Version(), Revision: revision[:min(12, len(revision))], Time: commitTime}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	if (i.Version == "" || i.Version == "dev") && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		i.Version = bi.Main.Version // go install ...@v1.2.3
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value[:min(12, len(s.Value))]
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the line `collabsync version` prints after the name.
func (i Info) String() string {
	s := i.Version
	if i.Revision != "" {
		s += " (revision " + i.Revision
		if i.Modified {
			s += ", modified"
		}
		if i.Time != "" {
			s += ", " + i.Time
		}
		s += ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// Package version says which portstripe this is (its version, the commit it
// was built from, the Go toolchain) and which HAProxy, iptables and nft it
// finds on PATH.
package version

import (
	"runtime"
	"runtime/debug"
	"strconv"
)

// Set with -ldflags -X by packaged builds (packaging/deb.sh), whose
// version is the package's and whose build may not see the repository;
// empty otherwise, and the go command's build info answers.
var (
	version    string
	revision   string
	commitTime string
	modified   string // "true" or "false"
)

// Info is the build: where it comes from and what built it.
type Info struct {
	// Version is the package version, the module version of a `go
	// install …@v1.2.3`, or "(devel)" for a build from a checkout.
	Version string `json:"version"`
	// Revision, CommitTime and Modified describe the commit it was built
	// from; empty and false when the build did not record them
	// (-buildvcs=false, go test).
	Revision   string `json:"revision"`
	CommitTime string `json:"commit_time"`
	Modified   bool   `json:"modified"`
	GoVersion  string `json:"go_version"`
}

// Get reads the build info, with the -ldflags -X values over it.
func Get() Info {
	i := Info{Version: "(devel)", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.time":
				i.CommitTime = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		i.Version = version
	}
	if revision != "" {
		i.Revision = revision
	}
	if commitTime != "" {
		i.CommitTime = commitTime
	}
	if m, err := strconv.ParseBool(modified); err == nil {
		i.Modified = m
	}
	return i
}

// String is the one-line form the headers of haproxy.cfg and rules.v4,
// --version and portstripe_build_info carry: "0.1.0-1 (rev 0123456789ab)",
// with ", modified" when the tree had uncommitted changes.
func (i Info) String() string {
	s := i.Version
	switch rev := i.ShortRevision(); {
	case rev != "" && i.Modified:
		s += " (rev " + rev + ", modified)"
	case rev != "":
		s += " (rev " + rev + ")"
	}
	return s
}

// ShortRevision is the revision cut to 12 hex digits, as Go's
// pseudo-versions have it.
func (i Info) ShortRevision() string {
	if len(i.Revision) > 12 {
		return i.Revision[:12]
	}
	return i.Revision
}

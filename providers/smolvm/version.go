package smolvm

import (
	"cmp"
	"fmt"
)

// Version is a smolvm release.
type Version struct {
	Major, Minor, Patch int
}

// Releases whose CLI differs from the one before.
var (
	// v1NameFlag: create takes -n/--name (a positional name is rejected)
	// and delete requires --name.
	v1NameFlag = Version{1, 0, 2}
	// v1Labels: create takes --label K=V, and ls --json shows labels.
	v1Labels = Version{1, 8, 0}
	// v1Workload: create takes "-- CMD" (the workload) and --image accepts a
	// docker-save archive.
	v1Workload = Version{1, 9, 0}
	// v1CpOwner: cp takes --mode, --uid and --gid for uploads.
	v1CpOwner = Version{1, 9, 0}
)

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Compare returns -1, 0 or +1 as v is older than, the same as or newer
// than o.
func (v Version) Compare(o Version) int {
	if c := cmp.Compare(v.Major, o.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Minor, o.Minor); c != 0 {
		return c
	}
	return cmp.Compare(v.Patch, o.Patch)
}

// AtLeast reports whether v is o or newer.
func (v Version) AtLeast(o Version) bool { return v.Compare(o) >= 0 }

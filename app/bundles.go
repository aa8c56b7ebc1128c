package app

import (
	"fmt"
	"os"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
)

// bundles are the linux builds of bottle-bundle that ship beside
// bottle-apply, one an architecture: the built-in bundle image is made of
// the engine's, and the self-test's probe is the agent's.
type bundles struct {
	dir bundlebin.Dir
	// ref names the built-in bundle image after every build: the same
	// whatever the engine's architecture, so that planning needs no docker
	// info. It is "" when no build is there.
	ref string
}

// shippedBundles finds the builds beside bottle-apply's executable.
func shippedBundles() (bundles, error) {
	exe, err := os.Executable()
	if err != nil {
		return bundles{}, fmt.Errorf("find own executable, beside which the bottle-bundle builds are: %w", err)
	}
	dir, err := bundlebin.Beside(exe)
	if err != nil {
		return bundles{}, err
	}
	builds, err := dir.All()
	if err != nil || len(builds) == 0 {
		return bundles{dir: dir}, err
	}
	ref, err := bundleimage.Ref(builds)
	return bundles{dir: dir, ref: ref}, err
}

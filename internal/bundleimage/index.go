package bundleimage

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
)

// Labels are the built-in image's labels: the version of the bottle-apply
// that made it.
func Labels(version string) map[string]string {
	return map[string]string{bottle.LabelVersion: version}
}

// epoch is the time of everything in an image made here (its files, its
// creation): the same builds make the same image, byte for byte, whenever
// and wherever they are made.
var epoch = time.Unix(0, 0).UTC()

// Image is the built-in bundle image of the bottle-bundle build bin for
// linux/goarch, as an OCI image: one layer (WriteRootfs), the entrypoint
// and Labels(version) in its config. Its digest depends on nothing but
// the build's content, goarch and version.
func Image(bin, goarch, version string) (v1.Image, error) {
	var rootfs bytes.Buffer
	if err := WriteRootfs(&rootfs, bin); err != nil {
		return nil, fmt.Errorf("make the root file system of the bundle image for linux/%s: %w", goarch, err)
	}
	data := rootfs.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("make the layer of the bundle image for linux/%s: %w", goarch, err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: goarch,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       v1.Config{Entrypoint: slices.Clone(Entrypoint), Labels: Labels(version)},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("make the config of the bundle image for linux/%s: %w", goarch, err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "bottle-apply: " + filepath.Base(bin) + " as " + BinaryPath},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, fmt.Errorf("make the bundle image for linux/%s: %w", goarch, err)
	}
	return img, nil
}

// Index is the built-in bundle image of every build (their paths, named
// as bundlebin names them) under one OCI image index, one image an
// architecture, so that a node of each architecture pulls its own; and the
// platforms it holds ("linux/amd64"), sorted. Every build is checked to be
// a static executable for the architecture its name says.
func Index(builds []string, version string) (v1.ImageIndex, []string, error) {
	if len(builds) == 0 {
		return nil, nil, fmt.Errorf("%w: none to make the built-in bundle image of", bundlebin.ErrNoBuild)
	}
	builds = slices.Clone(builds)
	slices.SortFunc(builds, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var platforms []string
	for _, b := range builds {
		goarch, ok := strings.CutPrefix(filepath.Base(b), bundlebin.Prefix)
		if !ok || goarch == "" {
			return nil, nil, fmt.Errorf("internal: %s is not named as a bottle-bundle build (%sARCH)", b, bundlebin.Prefix)
		}
		if slices.Contains(platforms, "linux/"+goarch) {
			return nil, nil, fmt.Errorf("two bottle-bundle builds for linux/%s: %s and another", goarch, b)
		}
		if err := bundlebin.Check(b, goarch); err != nil {
			return nil, nil, err
		}
		img, err := Image(b, goarch, version)
		if err != nil {
			return nil, nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: "linux", Architecture: goarch}},
		})
		platforms = append(platforms, "linux/"+goarch)
	}
	return idx, platforms, nil
}

// Package bundleimage is the built-in bundle image: what it holds (the
// bottle-bundle build for one architecture, an empty /tmp), how it runs
// (its entrypoint, the commands that ask it how it is) and what it is
// called (a tag named after the builds bottle-apply ships). Every place
// that makes the image or runs it shares this one description: the docker
// provider imports it into an engine, bottle-apply bundle push puts it in
// a registry for a cluster to pull.
package bundleimage

import (
	"archive/tar"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Repo is the repository of the built-in bundle image. Its tag is
// derived from the bottle-bundle builds bottle-apply ships, so a new
// bottle-apply brings a new bundle image (and replaces bundles, but not
// agents).
const Repo = "bottle-apply/bundle"

// BinaryPath is where the built-in bundle image holds bottle-bundle, its
// entrypoint.
const BinaryPath = "/bottle-bundle"

// StatusCmd asks the built-in bundle whether its daemons listen.
var StatusCmd = []string{BinaryPath, "status"}

// GuardCheckCmd asks the built-in bundle whether the host answers past its
// proxy (exit 3): whether the host guard's rule is missing.
var GuardCheckCmd = []string{BinaryPath, "guardcheck"}

// Entrypoint runs the bundle program inside the built-in image.
var Entrypoint = []string{BinaryPath}

// format names how the built-in image is made of a build (its path, its
// entrypoint): a new format is a new tag for the same builds.
const format = "bottle-bundle/1"

// Ref returns the built-in bundle image's reference for the bottle-bundle
// builds bottle-apply ships (their paths): the Go build ID (or, without
// one, the content) of every build names the tag. The engine's
// architecture does not enter it, so that planning needs no docker info:
// the image of each engine holds that engine's build.
func Ref(builds []string) (string, error) {
	if len(builds) == 0 {
		return "", errors.New("internal: no bottle-bundle build to name the built-in bundle image after")
	}
	builds = slices.Clone(builds)
	slices.SortFunc(builds, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	h := sha256.New()
	fmt.Fprintln(h, format)
	for _, b := range builds {
		id, err := buildID(b)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, filepath.Base(b), id)
	}
	return Repo + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// buildID is the Go build ID of the executable path, or, without one, a
// digest of its content.
func buildID(path string) (string, error) {
	if id, err := goBuildID(path); err == nil && id != "" {
		return id, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("bundle binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("bundle binary %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// goBuildID reads the Go build ID note of an ELF executable.
func goBuildID(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return "", nil
	}
	data, err := sec.Data()
	if err != nil || len(data) < 16 {
		return "", err
	}
	nameSize := binary.LittleEndian.Uint32(data[0:4])
	descSize := binary.LittleEndian.Uint32(data[4:8])
	off := 12 + (int(nameSize)+3)&^3
	if off+int(descSize) > len(data) {
		return "", nil
	}
	return string(data[off : off+int(descSize)]), nil
}

// WriteRootfs writes a root file system holding the bottle-bundle build
// bin and an empty /tmp.
func WriteRootfs(w io.Writer, bin string) error {
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: mtime}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: Entrypoint[0][1:], Mode: 0o755, Size: st.Size(), ModTime: mtime}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return err
	}
	return tw.Close()
}

// Package bundlebin finds the linux builds of the bottle-bundle program
// (cmd/bottle-bundle) that ship beside bottle-apply, one a platform:
// bottle-bundle-linux-amd64, bottle-bundle-linux-arm64. The built-in bundle
// image is made of the build for the engine's architecture, and the
// self-test copies a build into an agent as its probe: both run on the
// engine's platform (or the VM's), which need not be bottle-apply's.
//
// The builds sit beside the executable rather than inside it: bottle-apply
// stays one platform's program, a release is a directory of files that
// each build from a plain go build, and a fresh clone builds and tests
// without a generated file to embed.
package bundlebin

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Prefix starts the file name of every build.
const Prefix = "bottle-bundle-linux-"

// Arches are the architectures make build and a release build
// bottle-bundle for.
var Arches = []string{"amd64", "arm64"}

// Name is the file name of the linux build for goarch (a GOARCH).
func Name(goarch string) string { return Prefix + goarch }

// ErrNoBuild says that no build is there for an architecture.
var ErrNoBuild = errors.New("no bottle-bundle build")

// Dir is a directory of builds.
type Dir string

// Beside returns the directory of the executable exe, symbolic links
// resolved: a bottle-apply linked from /usr/local/bin finds the builds
// next to the file it links to.
func Beside(exe string) (Dir, error) {
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("find the bottle-bundle builds beside %s: %w", exe, err)
	}
	return Dir(filepath.Dir(real)), nil
}

// Path returns the build for goarch, checked: a static linux executable
// for that architecture. A missing one is ErrNoBuild.
func (d Dir) Path(goarch string) (string, error) {
	p := filepath.Join(string(d), Name(goarch))
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w for linux/%s: there is no %s in %s", ErrNoBuild, goarch, Name(goarch), d)
	}
	if err := Check(p, goarch); err != nil {
		return "", err
	}
	return p, nil
}

// All returns the paths of the builds in the directory, sorted, unchecked;
// none is not an error.
func (d Dir) All() ([]string, error) {
	entries, err := os.ReadDir(string(d))
	if err != nil {
		return nil, fmt.Errorf("list the bottle-bundle builds: %w", err)
	}
	var out []string
	for _, e := range entries {
		if arch, ok := strings.CutPrefix(e.Name(), Prefix); ok && isArch(arch) && !e.IsDir() {
			out = append(out, filepath.Join(string(d), e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// isArch reports whether s can be a GOARCH: lower-case letters and digits.
func isArch(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

// machines are the ELF machines of the architectures a build is checked
// for; another architecture is checked for being static only.
var machines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "s390x": elf.EM_S390, "ppc64le": elf.EM_PPC64, "loong64": elf.EM_LOONGARCH,
}

// Check fails unless path is a statically linked linux ELF executable for
// goarch ("" for any): an image FROM scratch, and an agent's image, may
// have no dynamic loader.
func Check(path, goarch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("the bottle-bundle build %s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("the bottle-bundle build %s is dynamically linked: rebuild it with CGO_ENABLED=0 (make build)", path)
		}
	}
	if m, ok := machines[goarch]; ok && f.Machine != m {
		return fmt.Errorf("the bottle-bundle build %s is for %s, not linux/%s: rebuild it (make build)", path, f.Machine, goarch)
	}
	return nil
}

// Arch names the architecture of the ELF executable at path as Go does
// ("amd64"); "?" when it cannot be read.
func Arch(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	for goarch, m := range machines {
		if f.Machine == m {
			return goarch
		}
	}
	return strings.ToLower(strings.TrimPrefix(f.Machine.String(), "EM_"))
}

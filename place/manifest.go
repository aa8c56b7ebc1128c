// Package place puts the agent's files (spec.agent.files) in place where
// no engine call can: on the kubernetes backend an init container of the
// agent's pod runs `bottle-bundle place`, which reads a Manifest from
// BOTTLE_PLACE and copies each file from the Secret that holds the
// contents to its destination, owned by its owner, with its mode, as the
// docker backend's tar does (providers/docker/files.go).
//
// It is a package of its own, not part of package bundle, because the
// kubernetes provider builds the Manifest that the bundle reads: the
// provider imports this package, and package bundle would bring the
// bundle's daemons (proxy, DNS, nftables) with it. The code that applies
// a Manifest lives beside its types, so that the format and its only
// reader are one contract in one place; it needs only the standard
// library, so it costs the provider nothing.
//
// The contract, between the provider and the init container:
//
//   - The Secret of the files' contents is mounted read-only at SrcDir,
//     one key per file: Key(i) ("f0", "f1", ...), i the file's index in
//     spec.agent.files, then for a bottle with credentials the files of
//     its CA (bottle.CAFiles), which follow them.
//   - A file whose path lies inside a named volume of the agent is written
//     into that volume: the init container mounts the same claim at the
//     same target as the agent, and File.Volume is that target.
//   - Any other file is written to OutDir/Key(i), an emptyDir, which the
//     agent container mounts with subPath Key(i) at the file's path;
//     File.Volume is "".
//   - Chown lists the volume roots given to spec.agent.user on every
//     create (mode 0755, as docker does).
package place

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// Env is the environment variable that holds the Manifest, as JSON.
const Env = "BOTTLE_PLACE"

// SrcDir is where the init container mounts the Secret of the files'
// contents, read-only.
const SrcDir = "/bottle-files/src"

// OutDir is where the init container mounts the emptyDir that holds the
// files outside every volume, as OutDir/Key(i); the agent container
// mounts that emptyDir with subPath Key(i) at the file's path.
const OutDir = "/bottle-files/out"

// Key is the name of file i (its index in spec.agent.files): its key in
// the Secret and its name in OutDir.
func Key(i int) string { return "f" + strconv.Itoa(i) }

// Manifest says what `bottle-bundle place` does: the volume roots to give
// away first, then the files, in order.
type Manifest struct {
	Files []File  `json:"files"`
	Chown []Chown `json:"chown"`
}

// File is one file to put in place.
type File struct {
	// Path is the file's path in the agent (spec.agent.files[i].path),
	// for messages only; Dst when empty.
	Path string `json:"path,omitempty"`
	// Src is the file holding the content: SrcDir/Key(i).
	Src string `json:"src"`
	// Dst is where it is written in the init container: its path in the
	// agent when Volume is set, else OutDir/Key(i).
	Dst string `json:"dst"`
	// Mode holds permission bits only (0o777 at most), as a JSON number:
	// 384 is 0600.
	Mode fs.FileMode `json:"mode"`
	UID  int         `json:"uid"`
	GID  int         `json:"gid"`
	// Volume is the mount point of the volume Dst lies in, which the
	// writes never leave, or "" for a file of OutDir, which is written in
	// Dst's directory.
	Volume string `json:"volume"`
}

// Chown is a volume root (its mount point, a real directory) given to an
// owner with mode 0755.
type Chown struct {
	Path string `json:"path"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// New is the Manifest of files (resolved spec.agent.files, in the spec's
// order) for an agent whose named volumes the init container mounts at
// volumes (their targets): a file goes into the volume mounted deepest
// above it, or to OutDir. Chown is left for the caller to fill: which
// roots are given to whom is the provider's rule (docker's: each writable
// named volume, once, when spec.agent.user is set).
func New(files []bottle.File, volumes []string) (Manifest, error) {
	m := Manifest{Files: make([]File, 0, len(files))}
	for i, f := range files {
		pf := File{Path: f.Path, Src: SrcDir + "/" + Key(i), Dst: OutDir + "/" + Key(i),
			Mode: f.Mode.Perm(), UID: f.UID, GID: f.GID}
		for _, v := range volumes {
			if strings.HasPrefix(f.Path, v+"/") && len(v) > len(pf.Volume) {
				pf.Volume = v
			}
		}
		if pf.Volume != "" {
			pf.Dst = f.Path
		}
		m.Files = append(m.Files, pf)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("internal: %w", err)
	}
	return m, nil
}

// Parse reads a Manifest from JSON, refusing unknown fields, and
// validates it.
func Parse(data []byte) (Manifest, error) {
	var m Manifest
	if err := strictUnmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("read the manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Validate reports every problem of m at once: paths must be absolute and
// clean (so with no ".."), a file's Dst strictly inside its Volume, modes
// permission bits only, owners non-negative, each Dst written once.
func (m Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	dsts := map[string]int{}
	for i, f := range m.Files {
		field := "files[" + strconv.Itoa(i) + "]"
		if f.Path != "" {
			if msg := checkPath(f.Path); msg != "" {
				bad("%s.path: %s", field, msg)
			}
		}
		if msg := checkPath(f.Src); msg != "" {
			bad("%s.src: %s", field, msg)
		}
		if msg := checkPath(f.Dst); msg != "" {
			bad("%s.dst: %s", field, msg)
		} else if j, dup := dsts[f.Dst]; dup {
			bad("%s.dst: %q is already written by files[%d]", field, f.Dst, j)
		} else {
			dsts[f.Dst] = i
		}
		if f.Volume != "" {
			if msg := checkPath(f.Volume); msg != "" {
				bad("%s.volume: %s", field, msg)
			} else if !strings.HasPrefix(f.Dst, f.Volume+"/") {
				bad("%s.dst: %q is not inside its volume %q", field, f.Dst, f.Volume)
			}
		}
		if f.Mode&^fs.ModePerm != 0 {
			bad("%s.mode: %#o has more than permission bits", field, uint32(f.Mode))
		}
		if f.UID < 0 || f.GID < 0 {
			bad("%s: owner %d:%d is negative", field, f.UID, f.GID)
		}
	}
	for i, c := range m.Chown {
		field := "chown[" + strconv.Itoa(i) + "]"
		if msg := checkPath(c.Path); msg != "" {
			bad("%s.path: %s", field, msg)
		}
		if c.UID < 0 || c.GID < 0 {
			bad("%s: owner %d:%d is negative", field, c.UID, c.GID)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid manifest: %w", err)
	}
	return nil
}

// checkPath returns what is wrong with a path of the manifest, or "".
func checkPath(p string) string {
	switch {
	case p == "":
		return "is empty"
	case !path.IsAbs(p):
		return fmt.Sprintf("%q is not absolute", p)
	case path.Clean(p) != p:
		return fmt.Sprintf("%q is not clean (no \"..\", \".\", \"//\" nor trailing \"/\")", p)
	case p == "/":
		return "\"/\" is not allowed"
	}
	return ""
}

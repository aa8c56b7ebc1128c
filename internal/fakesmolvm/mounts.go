package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// volume is one parsed -v HOST:GUEST[:ro] (checkVolume has checked it).
type volume struct {
	host, guest string
	readOnly    bool
}

func parseVolume(s string) volume {
	parts := strings.Split(s, ":")
	v := volume{host: parts[0], guest: parts[1]}
	if len(parts) == 3 && parts[2] == "ro" {
		v.readOnly = true
	}
	return v
}

// mountView is a mount as smolvm's HTTP API shows it
// (mounts[{tag,source,target,readonly}]); the CLI's JSON has a count
// only, so this appears under the "fake" key. The tag is made up: the
// reference does not say how smolvm names virtiofs tags.
type mountView struct {
	Tag      string `json:"tag"`
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readonly"`
}

func mountViews(vols []string) []mountView {
	out := make([]mountView, 0, len(vols))
	for i, s := range vols {
		v := parseVolume(s)
		out = append(out, mountView{Tag: "smolvm" + strconv.Itoa(i), Source: v.host, Target: v.guest, ReadOnly: v.readOnly})
	}
	return out
}

// attachMounts emulates the virtiofs mounts a boot attaches: GUEST in the
// root becomes a symbolic link to HOST, so that exec and cp inside GUEST
// reach the host directory, as in a VM. What a real mount would hide (an
// empty directory at GUEST) is removed; a non-empty one, or a file, is a
// fake error. Read-only is enforced by cp only (see cp).
func attachMounts(root string, vols []string) error {
	for _, s := range vols {
		v := parseVolume(s)
		target := guestPath(root, v.guest)
		if target == root {
			return fakeError("mount %s at /: not emulated", v.host)
		}
		fi, err := os.Lstat(target)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fakeError("mount %s: %v", v.guest, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			if err := os.Remove(target); err != nil {
				return fakeError("mount %s: %v", v.guest, err)
			}
		case fi.IsDir():
			if err := os.Remove(target); err != nil {
				return fakeError("mount %s over a non-empty directory: not emulated (%v)", v.guest, err)
			}
		default:
			return fakeError("mount %s over a file: not emulated", v.guest)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fakeError("mount %s: %v", v.guest, err)
		}
		if err := os.Symlink(v.host, target); err != nil {
			return fakeError("mount %s: %v", v.guest, err)
		}
	}
	return nil
}

// readOnlyMount reports whether the guest path p lies in a read-only
// mount of vols.
func readOnlyMount(vols []string, p string) bool {
	p = filepath.Clean("/" + p)
	for _, s := range vols {
		v := parseVolume(s)
		g := filepath.Clean(v.guest)
		if v.readOnly && (p == g || strings.HasPrefix(p, g+"/")) {
			return true
		}
	}
	return false
}

// chownUpload applies cp's --uid/--gid as the guest agent (root) would.
// A fake run by a user other than root cannot give a file to another
// uid: the owner then stays as it is, and argv.log still shows the flags.
func chownUpload(path string, uid, gid int) error {
	err := os.Lchown(path, uid, gid)
	if err != nil && errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

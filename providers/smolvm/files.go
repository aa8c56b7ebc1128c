package smolvm

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
	"github.com/bottle-apply/bottle-apply/guest"
)

// Setup commands run in the machine with -w / and paths made relative
// ("./etc/x" for /etc/x): the same files in a VM, and never a path of the
// host's when the smolvm is the tests' fake, whose guest commands run on
// the host in the machine's directory. The "./" also keeps a path from
// reading as an option.
func guestRel(p string) string { return "." + path.Clean("/"+p) }

// mkdirScript makes each missing directory of its arguments, in order
// (parents first), owned by $1: only the directories it makes change
// hands, so that a file's owner may write next to it in a directory
// bottle-apply made for it, and the image's own directories stay as they
// are. It needs sh in the image.
const mkdirScript = `u=$1; shift; for d; do [ -d "$d" ] || { mkdir "$d" && chown "$u" "$d"; } || exit 1; done`

// guestMkdirs makes dir and its missing parents in machine name, owned by
// owner (uid:gid). dir is absolute.
func (c cli) guestMkdirs(ctx context.Context, name, dir, owner string) error {
	dir = path.Clean("/" + dir)
	if dir == "/" {
		return nil
	}
	var chain []string
	for d := dir; d != "/"; d = path.Dir(d) {
		chain = append([]string{guestRel(d)}, chain...)
	}
	cmd := append([]string{"sh", "-c", mkdirScript, "sh", owner}, chain...)
	if err := c.execRun(ctx, name, guest.ExecOptions{Cmd: cmd, Workdir: "/"}); err != nil {
		return fmt.Errorf("make directory %s: %w", dir, err)
	}
	return nil
}

// copyFiles writes spec.agent.files into a running machine: each through a
// temporary file of mode 0600 in a private directory (removed at the
// end), with its mode and owner set by cp itself from smolvm 1.9, by
// chown and chmod in the machine before. Missing parent directories are
// made, owned by the file's owner (guestMkdirs). Errors name paths, never
// content.
func (p *Provider) copyFiles(ctx context.Context, v Version, name string, files []bottle.File) error {
	if len(files) == 0 {
		return nil
	}
	tmp, err := os.MkdirTemp("", "bottle-apply-files-")
	if err != nil {
		return fmt.Errorf("write spec.agent.files: %w", err)
	}
	defer os.RemoveAll(tmp)
	for i, f := range files {
		if err := p.copyFile(ctx, v, name, filepath.Join(tmp, strconv.Itoa(i)), f); err != nil {
			return fmt.Errorf("write spec.agent.files %s into machine %s: %w", f.Path, name, err)
		}
	}
	return nil
}

func (p *Provider) copyFile(ctx context.Context, v Version, name, src string, f bottle.File) error {
	if !path.IsAbs(f.Path) {
		return fmt.Errorf("internal: %s is not an absolute path", f.Path)
	}
	if err := os.WriteFile(src, f.Content, 0o600); err != nil {
		return err
	}
	defer os.Remove(src)
	owner := fmt.Sprintf("%d:%d", f.UID, f.GID)
	if err := p.cli.guestMkdirs(ctx, name, path.Dir(f.Path), owner); err != nil {
		return err
	}
	dst := name + ":" + f.Path
	if v.AtLeast(v1CpOwner) {
		return p.cli.cpOwned(ctx, src, dst, f.Mode, f.UID, f.GID)
	}
	if err := p.cli.cp(ctx, src, dst); err != nil {
		return err
	}
	// chown first: it may clear mode bits that chmod then sets.
	rel := guestRel(f.Path)
	for _, cmd := range [][]string{{"chown", owner, rel}, {"chmod", fmt.Sprintf("%04o", f.Mode.Perm()), rel}} {
		if err := p.cli.execRun(ctx, name, guest.ExecOptions{Cmd: cmd, Workdir: "/"}); err != nil {
			return err
		}
	}
	return nil
}

// imageRoots is the CA bundle of the running machine's image, the first
// of bottle.ImageCABundles it has (smolvm cp reads through a symbolic
// link); where it has none, the roots bottle-apply carries. It says where
// they came from.
func (p *Provider) imageRoots(ctx context.Context, name string) ([]byte, string) {
	tmp, err := os.MkdirTemp("", "bottle-apply-roots-")
	if err == nil {
		defer os.RemoveAll(tmp)
		for i, at := range bottle.ImageCABundles {
			dst := filepath.Join(tmp, strconv.Itoa(i))
			if p.cli.cp(ctx, name+":"+at, dst) != nil {
				continue
			}
			if st, err := os.Stat(dst); err != nil || st.Size() == 0 || st.Size() > bottle.MaxCABundleSize {
				continue
			}
			if data, err := os.ReadFile(dst); err == nil {
				return data, at
			}
		}
	}
	return ca.FallbackRootsPEM(), "bottle-apply's own roots (the image has no CA bundle)"
}

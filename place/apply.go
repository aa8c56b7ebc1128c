package place

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// rootMode is the mode a volume root given to the user gets, and the mode
// of a parent directory made for a file: docker's.
const rootMode fs.FileMode = 0o755

// Run is `bottle-bundle place`: it reads the Manifest from Env, applies
// it and says on stdout how many files it placed.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	raw := getenv(Env)
	if raw == "" {
		return fmt.Errorf("place: %s is not set: it holds the manifest of the files to put in place (JSON)", Env)
	}
	m, err := Parse([]byte(raw))
	if err != nil {
		return fmt.Errorf("place: %s: %w", Env, err)
	}
	if err := Apply(ctx, m); err != nil {
		return fmt.Errorf("place: %w", err)
	}
	fmt.Fprintf(stdout, "files placed: %d, volume roots given away: %d\n", len(m.Files), len(m.Chown))
	return nil
}

// Apply gives the volume roots of m.Chown away, then puts each file of
// m.Files in place; it stops at the first error, which names the file by
// its path in the agent and never holds its content.
//
// What lies in a volume belongs to the agent, which may have planted
// anything there, and Apply runs as root. So it opens each volume as an
// os.Root, which no operation leaves, and walks a file's parent
// directories one at a time without following symbolic links: a link
// anywhere on the path is refused, even one that stays in the volume
// (docker would follow it, inside the container), as is a Dst that is a
// directory. A missing parent is made, owned by the
// file's owner with mode 0755; an existing one is left as it is. The file
// is written to a new temporary file beside Dst, given its owner and mode
// through its descriptor, and renamed over Dst: whatever was at Dst (a
// file, a symbolic link, a fifo, a device) is replaced, never opened.
func Apply(ctx context.Context, m Manifest) error {
	if err := m.Validate(); err != nil {
		return err
	}
	for _, c := range m.Chown {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := giveRoot(c); err != nil {
			return fmt.Errorf("give volume root %s to %d:%d: %w", c.Path, c.UID, c.GID, err)
		}
	}
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := placeFile(f); err != nil {
			return fmt.Errorf("put %s in place: %w", f.shown(), err)
		}
	}
	return nil
}

// giveRoot gives the directory c.Path to its owner, with mode 0755,
// through a descriptor of the directory itself.
func giveRoot(c Chown) error {
	r, err := openVolume(c.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	return chownDir(r, c.UID, c.GID)
}

// placeFile writes one file, as Apply says.
func placeFile(f File) error {
	content, err := os.ReadFile(f.Src) // a Secret's keys are symbolic links: follow them
	if err != nil {
		return fmt.Errorf("read its content: %w", err)
	}
	top, rel := path.Dir(f.Dst), path.Base(f.Dst)
	if f.Volume != "" {
		top, rel = f.Volume, strings.TrimPrefix(f.Dst, f.Volume+"/")
	}
	r, err := openVolume(top)
	if err != nil {
		return err
	}
	defer r.Close()
	dir, err := walk(r, top, path.Dir(rel), f.UID, f.GID)
	if err != nil {
		return err
	}
	if dir != r {
		defer dir.Close()
	}
	return replace(dir, path.Base(rel), content, f)
}

// openVolume opens the directory p (a volume's mount point, or OutDir),
// refusing a symbolic link: one there would have been put by the image or
// the runtime, not by the agent, but it is still not the directory the
// manifest means.
func openVolume(p string) (*os.Root, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if err := isDir(fi, p); err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(p)
	if err != nil {
		return nil, err
	}
	if err := same(r, fi, p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// walk opens the directory rel (relative to r; "." is r itself, which
// walk returns) one component at a time: each must be a directory, not a
// symbolic link; a missing one is made, owned by uid:gid with mode 0755.
// top is r's path, for messages. The caller closes what walk returns
// unless it is r.
func walk(r *os.Root, top, rel string, uid, gid int) (*os.Root, error) {
	if rel == "." {
		return r, nil
	}
	cur, shown := r, top
	for name := range strings.SplitSeq(rel, "/") {
		shown += "/" + name
		next, err := enter(cur, name, shown, uid, gid)
		if cur != r {
			cur.Close()
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// enter opens the directory name of cur, making it if it is missing.
func enter(cur *os.Root, name, shown string, uid, gid int) (*os.Root, error) {
	made := false
	fi, err := cur.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		// 0700 until it has its owner and mode; EEXIST: made meanwhile.
		if err := cur.Mkdir(name, 0o700); err == nil {
			made = true
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("make parent directory %s: %w", shown, err)
		}
		fi, err = cur.Lstat(name)
	}
	if err != nil {
		return nil, fmt.Errorf("look at parent directory %s: %w", shown, err)
	}
	if err := isDir(fi, shown); err != nil {
		return nil, err
	}
	next, err := cur.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("open parent directory %s: %w", shown, err)
	}
	if err := same(next, fi, shown); err != nil {
		next.Close()
		return nil, err
	}
	if made {
		if err := chownDir(next, uid, gid); err != nil {
			next.Close()
			return nil, fmt.Errorf("give parent directory %s to %d:%d: %w", shown, uid, gid, err)
		}
	}
	return next, nil
}

// replace writes content to a new file beside name in dir, with f's owner
// and mode, and renames it over name.
func replace(dir *os.Root, name string, content []byte, f File) error {
	if fi, err := dir.Lstat(name); err == nil && fi.IsDir() {
		return errIsDir
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, tmpName, err := createTemp(dir, name)
	if err != nil {
		return fmt.Errorf("create a temporary file beside it: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = dir.Remove(tmpName)
		}
	}()
	// Mode before owner: it is permission bits only, which chown keeps.
	_, werr := tmp.Write(content)
	if err := errors.Join(werr, tmp.Chmod(f.Mode), tmp.Chown(f.UID, f.GID), tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("write a temporary file beside it: %w", err)
	}
	if err := dir.Rename(tmpName, name); err != nil {
		if fi, lerr := dir.Lstat(name); lerr == nil && fi.IsDir() {
			return errIsDir
		}
		return fmt.Errorf("rename a temporary file over it: %w", err)
	}
	renamed = true
	return nil
}

// errIsDir refuses a Dst that is a directory, as docker's copy does
// (CopyToContainer without AllowOverwriteDirWithFile).
var errIsDir = errors.New("it is a directory; remove it, or choose another path for the file")

// createTemp creates a new file .NAME.bottle-RANDOM in dir, mode 0600,
// never through a symbolic link (O_EXCL).
func createTemp(dir *os.Root, name string) (*os.File, string, error) {
	for range 10 {
		tmpName := "." + name + ".bottle-" + rand.Text()[:12]
		f, err := dir.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, tmpName, err
	}
	return nil, "", errors.New("no free temporary name")
}

// chownDir gives the directory r to uid:gid with mode 0755, through its
// descriptor.
func chownDir(r *os.Root, uid, gid int) error {
	d, err := r.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return errors.Join(d.Chmod(rootMode), d.Chown(uid, gid))
}

// isDir refuses fi (from Lstat) unless it is a directory.
func isDir(fi fs.FileInfo, shown string) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link, which is not followed; make it a directory", shown)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", shown)
	}
	return nil
}

// same refuses r unless it is the directory fi was read from: nothing
// swapped it between the Lstat and the open.
func same(r *os.Root, fi fs.FileInfo, shown string) error {
	st, err := r.Stat(".")
	if err != nil {
		return err
	}
	if !os.SameFile(fi, st) {
		return fmt.Errorf("%s changed while it was being opened", shown)
	}
	return nil
}

// shown is how a file is named in messages: its path in the agent.
func (f File) shown() string {
	if f.Path != "" {
		return f.Path
	}
	return f.Dst
}

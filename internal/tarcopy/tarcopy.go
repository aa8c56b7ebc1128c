// Package tarcopy copies files as docker cp does, with tar streams: it
// writes a host path into one, and extracts one from a guest, which is
// not trusted, onto the host.
package tarcopy

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// ErrShortArchive marks an archive that ended before its first entry, or
// could not be read.
var ErrShortArchive = errors.New("short archive")

// Owner is a numeric uid and gid.
type Owner struct{ UID, GID int }

// Write writes src (a file or a directory, or a directory's contents
// when it ends in "/.") as a tar stream whose top entry is named as (a
// slash-separated path), after directory entries for the parents of as.
// With an owner, every entry belongs to it.
func Write(w io.Writer, src, as string, own *Owner) error {
	tw := tar.NewWriter(w)
	header := func(hdr *tar.Header) error {
		if own != nil {
			hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = own.UID, own.GID, "", ""
		}
		return tw.WriteHeader(hdr)
	}
	var parents []string
	if as != "" {
		parents = strings.Split(path.Dir(as), "/")
		if path.Dir(as) == "." {
			parents = nil
		}
	}
	prefix := ""
	for _, p := range parents {
		prefix = path.Join(prefix, p)
		if err := header(&tar.Header{Name: prefix + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()}); err != nil {
			return err
		}
	}
	root := filepath.Clean(src)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := path.Join(as, filepath.ToSlash(rel))
		if name == "." || name == "" {
			return nil // a directory's contents: not the directory itself
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		hdr.Name = name
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := header(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// entryPath maps the name of an entry of a tar stream whose top entry is
// top ("." for a directory's contents) to a path relative to the
// extraction's root, as base (the name dst gives the top entry; "" for
// contents) plus what follows top. Any other name is refused: the stream
// comes from the guest, which a hostile agent controls. ok is false for
// the top of contents, which is the root itself.
func entryPath(name, top, base string) (rel string, ok bool, err error) {
	n := path.Clean(strings.TrimPrefix(name, "./"))
	var rest string
	switch {
	case top == ".":
		if n == "." {
			return "", false, nil
		}
		rest = n
	case n == top:
	case strings.HasPrefix(n, top+"/"):
		rest = n[len(top)+1:]
	default:
		return "", false, fmt.Errorf("refusing entry %q outside the destination", name)
	}
	out := filepath.FromSlash(path.Join(base, rest))
	if !filepath.IsLocal(out) || path.IsAbs(n) || strings.HasPrefix(rest, "../") || rest == ".." {
		return "", false, fmt.Errorf("refusing entry %q outside the destination", name)
	}
	return out, true, nil
}

// linkInside says whether a symbolic link at rel (relative to the root),
// to target, stays within the tree of base (the copy's top entry; "" for
// the whole root, as contents).
//
// A target that climbs ("..") is never inside: read as text it may stay
// in the tree while on disk it goes through another link of the same
// archive (out/d/a -> ../.., then out/d/b -> a/../../x) and out of it.
func linkInside(rel, target, base string) bool {
	if target == "" || path.IsAbs(target) || filepath.IsAbs(target) {
		return false
	}
	if slices.Contains(strings.Split(filepath.ToSlash(target), "/"), "..") {
		return false
	}
	resolved := path.Join(path.Dir(filepath.ToSlash(rel)), target)
	if base == "" {
		return filepath.IsLocal(resolved)
	}
	b := filepath.ToSlash(base)
	return resolved == b || strings.HasPrefix(resolved, b+"/")
}

// Extract extracts a tar stream, whose top entry is named
// top ("." for a directory's contents), to the host path dst: an existing
// directory receives it inside under top's name (contents: dst itself),
// anything else is replaced by it.
//
// The guest is not trusted. Every write goes through an os.Root at the
// destination's directory; an entry whose name leaves the copied tree is
// refused, and so is one whose parent on disk is a symbolic link (from the
// stream or already there): nothing is written through a link. A symbolic
// link that would point out of the copied tree is skipped (a warning on
// the context's logger), as kubectl cp does, and so is anything but
// directories, files, links within the tree and hard links within it.
// Modes keep their permission bits only (no setuid). An existing file is
// replaced, never written through.
func Extract(ctx context.Context, r io.Reader, top, dst string) error {
	target := filepath.Clean(dst)
	dir, base := filepath.Dir(target), filepath.Base(target)
	st, err := os.Stat(target)
	switch {
	case top == ".":
		if err != nil {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		} else if !st.IsDir() {
			return fmt.Errorf("%s is not a directory: a directory's contents go into one", dst)
		}
		dir, base = target, ""
	case err == nil && st.IsDir():
		dir, base = target, top
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	log := zerolog.Ctx(ctx)
	tr := tar.NewReader(r)
	seen := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if !seen {
				return fmt.Errorf("the guest sent an empty archive (%w)", ErrShortArchive)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the archive (%w): %w", ErrShortArchive, err)
		}
		seen = true
		name, ok, err := entryPath(hdr.Name, top, base)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := noLinkAbove(root, name); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
			if hdr.Typeflag == tar.TypeSymlink && !linkInside(name, hdr.Linkname, base) {
				log.Warn().Str("entry", hdr.Name).Str("target", hdr.Linkname).Msg("skipping a symbolic link that points out of the copy")
				continue
			}
			var old string
			if hdr.Typeflag == tar.TypeLink {
				if old, _, err = entryPath(hdr.Linkname, top, base); err != nil {
					return fmt.Errorf("hard link %q: %w", hdr.Name, err)
				}
				if err := noLinkAbove(root, old); err != nil {
					return err
				}
			}
			if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return err
			}
			if fi, err := root.Lstat(name); err == nil && !fi.IsDir() {
				if err := root.Remove(name); err != nil {
					return err
				}
			}
			switch hdr.Typeflag {
			case tar.TypeSymlink:
				if err := root.Symlink(hdr.Linkname, name); err != nil {
					return err
				}
				continue
			case tar.TypeLink:
				if err := root.Link(old, name); err != nil {
					return err
				}
				continue
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fs.FileMode(hdr.Mode)&0o777)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			log.Warn().Str("entry", hdr.Name).Msg("skipping an entry that is no file, directory nor link")
		}
	}
}

// noLinkAbove refuses a name under root whose parent directories include
// a symbolic link: writing below it would write through the link.
func noLinkAbove(root *os.Root, name string) error {
	dir := filepath.Dir(name)
	if dir == "." {
		return nil
	}
	p := ""
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("refusing entry %q: %s is a symbolic link", filepath.ToSlash(name), filepath.ToSlash(p))
		}
	}
	return nil
}

package place

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// requireRoot skips a test that gives files away.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving files to other owners needs root")
	}
}

// sandbox is a volume and, beside it, what lies outside it.
type sandbox struct {
	vol, out, outside, src string
}

func newSandbox(t *testing.T) sandbox {
	t.Helper()
	base := t.TempDir()
	s := sandbox{vol: filepath.Join(base, "vol"), out: filepath.Join(base, "out"),
		outside: filepath.Join(base, "outside"), src: filepath.Join(base, "src")}
	for _, d := range []string{s.vol, s.out, s.outside, s.src} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A Secret's keys are symbolic links into ..data: the source is read
	// through them.
	if err := os.Mkdir(filepath.Join(s.src, "..data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.src, "..data", "f0"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/f0", filepath.Join(s.src, "f0")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.outside, "victim"), []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// inVol is the manifest entry of one file at rel in the volume, rel
// joined as it is, not cleaned.
func (s sandbox) inVol(rel string) File {
	return File{Path: "/home/agent/" + rel, Src: filepath.Join(s.src, "f0"), Dst: s.vol + "/" + rel,
		Mode: 0o640, UID: 1000, GID: 1001, Volume: s.vol}
}

func mustOwn(t *testing.T, p string, uid, gid int, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid || fi.Mode().Perm() != mode {
		t.Errorf("%s is %d:%d %#o, want %d:%d %#o", p, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid, mode)
	}
}

func mustContain(t *testing.T, p, want string) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() {
		t.Fatalf("%s is %v, not a regular file", p, fi.Mode())
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != want {
		t.Fatalf("%s holds %q (%v), want %q", p, got, err, want)
	}
}

// mustBeClean fails on a temporary file left anywhere under dirs, and on
// anything new outside.
func mustBeClean(t *testing.T, s sandbox) {
	t.Helper()
	for _, d := range []string{s.vol, s.out} {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && strings.Contains(e.Name(), ".bottle-") {
				t.Errorf("temporary file left: %s", p)
			}
			return nil
		})
	}
	entries, err := os.ReadDir(s.outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "victim" {
		t.Errorf("outside the volume holds %v, want only victim", entries)
	}
	mustContain(t, filepath.Join(s.outside, "victim"), "untouched")
}

func TestApplyPlaces(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s sandbox)
		file  func(s sandbox) File
		check func(t *testing.T, s sandbox)
	}{
		{
			name: "into fresh directories",
			file: func(s sandbox) File { return s.inVol("a/b/file") },
			check: func(t *testing.T, s sandbox) {
				mustOwn(t, filepath.Join(s.vol, "a"), 1000, 1001, 0o755)
				mustOwn(t, filepath.Join(s.vol, "a/b"), 1000, 1001, 0o755)
				mustOwn(t, filepath.Join(s.vol, "a/b/file"), 1000, 1001, 0o640)
			},
		},
		{
			name: "into an existing directory, whose owner is untouched",
			setup: func(t *testing.T, s sandbox) {
				d := filepath.Join(s.vol, "etc")
				if err := os.Mkdir(d, 0o750); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(d, 4242, 4243); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("etc/new/file") },
			check: func(t *testing.T, s sandbox) {
				mustOwn(t, filepath.Join(s.vol, "etc"), 4242, 4243, 0o750)
				mustOwn(t, filepath.Join(s.vol, "etc/new"), 1000, 1001, 0o755)
				mustOwn(t, filepath.Join(s.vol, "etc/new/file"), 1000, 1001, 0o640)
			},
		},
		{
			name: "at the volume's root, owner and mode set",
			file: func(s sandbox) File {
				f := s.inVol(".gitconfig")
				f.Mode, f.UID, f.GID = 0o600, 0, 0
				return f
			},
			check: func(t *testing.T, s sandbox) {
				mustOwn(t, filepath.Join(s.vol, ".gitconfig"), 0, 0, 0o600)
				mustOwn(t, s.vol, 0, 0, 0o755) // the root is untouched
			},
		},
		{
			name: "replacing an existing file",
			setup: func(t *testing.T, s sandbox) {
				p := filepath.Join(s.vol, "file")
				if err := os.WriteFile(p, []byte("old, and longer than the new content is"), 0o666); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(p, 7, 7); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("file") },
			check: func(t *testing.T, s sandbox) {
				mustOwn(t, filepath.Join(s.vol, "file"), 1000, 1001, 0o640)
			},
		},
		{
			name:  "a symbolic link at dst to a file outside is replaced, not written through",
			setup: linkInVol("file", func(s sandbox) string { return filepath.Join(s.outside, "victim") }),
			file:  func(s sandbox) File { return s.inVol("file") },
			check: func(t *testing.T, s sandbox) {
				mustOwn(t, filepath.Join(s.vol, "file"), 1000, 1001, 0o640)
				mustOwn(t, filepath.Join(s.outside, "victim"), 0, 0, 0o644)
			},
		},
		{
			name:  "a dangling symbolic link at dst creates nothing outside",
			setup: linkInVol("file", func(s sandbox) string { return filepath.Join(s.outside, "created") }),
			file:  func(s sandbox) File { return s.inVol("file") },
		},
		{
			name:  "a relative symbolic link at dst climbing out is replaced",
			setup: linkInVol("file", func(sandbox) string { return "../outside/victim" }),
			file:  func(s sandbox) File { return s.inVol("file") },
		},
		{
			name: "a fifo at dst is replaced, never opened",
			setup: func(t *testing.T, s sandbox) {
				if err := syscall.Mkfifo(filepath.Join(s.vol, "file"), 0o666); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("file") },
		},
		{
			name: "outside every volume, into the emptyDir",
			file: func(s sandbox) File {
				return File{Path: "/home/agent/.gitconfig", Src: filepath.Join(s.src, "f0"), Dst: filepath.Join(s.out, "f0"),
					Mode: 0o600, UID: 1000, GID: 1000}
			},
			check: func(t *testing.T, s sandbox) {
				mustOwn(t, filepath.Join(s.out, "f0"), 1000, 1000, 0o600)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			f := tc.file(s)
			if err := Apply(t.Context(), Manifest{Files: []File{f}}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			mustContain(t, f.Dst, secret)
			if tc.check != nil {
				tc.check(t, s)
			}
			mustBeClean(t, s)
		})
	}
}

// linkInVol is a setup that puts a symbolic link at name in the volume,
// to the target the sandbox gives.
func linkInVol(name string, target func(s sandbox) string) func(*testing.T, sandbox) {
	return func(t *testing.T, s sandbox) {
		t.Helper()
		if err := os.Symlink(target(s), filepath.Join(s.vol, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestApplyRefuses(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s sandbox)
		file  func(s sandbox) File
		want  string // in the error, beside the file's path
		check func(t *testing.T, s sandbox)
	}{
		{
			name:  "a parent that is a symbolic link to a directory outside",
			setup: linkInVol("sub", func(s sandbox) string { return s.outside }),
			file:  func(s sandbox) File { return s.inVol("sub/file") },
			want:  "is a symbolic link, which is not followed",
		},
		{
			name: "a deeper parent that is a relative symbolic link climbing out",
			setup: func(t *testing.T, s sandbox) {
				if err := os.MkdirAll(filepath.Join(s.vol, "a"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("../../outside", filepath.Join(s.vol, "a", "b")); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("a/b/c/file") },
			want: "is a symbolic link, which is not followed",
			check: func(t *testing.T, s sandbox) {
				if _, err := os.Lstat(filepath.Join(s.outside, "c")); err == nil {
					t.Error("a directory was made outside the volume")
				}
			},
		},
		{
			name: "a parent that is a symbolic link inside the volume",
			setup: func(t *testing.T, s sandbox) {
				if err := os.Mkdir(filepath.Join(s.vol, "real"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("real", filepath.Join(s.vol, "link")); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("link/file") },
			want: "is a symbolic link, which is not followed",
			check: func(t *testing.T, s sandbox) {
				if _, err := os.Lstat(filepath.Join(s.vol, "real", "file")); err == nil {
					t.Error("the file was written through the link")
				}
			},
		},
		{
			name: "a parent that is a file",
			setup: func(t *testing.T, s sandbox) {
				if err := os.WriteFile(filepath.Join(s.vol, "a"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("a/file") },
			want: "is not a directory",
		},
		{
			name: "a dst that is a directory",
			setup: func(t *testing.T, s sandbox) {
				if err := os.MkdirAll(filepath.Join(s.vol, "file", "kept"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("file") },
			want: "it is a directory",
			check: func(t *testing.T, s sandbox) {
				if fi, err := os.Stat(filepath.Join(s.vol, "file", "kept")); err != nil || !fi.IsDir() {
					t.Errorf("the directory at dst was changed: %v", err)
				}
			},
		},
		{
			name: "\"..\" in dst",
			file: func(s sandbox) File { return s.inVol("../outside/victim") },
			want: "is not clean",
		},
		{
			name: "\"..\" in dst that cleans to a path inside the volume",
			file: func(s sandbox) File { return s.inVol("a/../file") },
			want: "is not clean",
		},
		{
			name: "a dst outside its volume",
			file: func(s sandbox) File {
				f := s.inVol("file")
				f.Dst = filepath.Join(s.outside, "victim")
				return f
			},
			want: "is not inside its volume",
		},
		{
			name: "a volume that is a symbolic link",
			setup: func(t *testing.T, s sandbox) {
				if err := os.Remove(s.vol); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(s.outside, s.vol); err != nil {
					t.Fatal(err)
				}
			},
			file: func(s sandbox) File { return s.inVol("file") },
			want: "is a symbolic link, which is not followed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			f := tc.file(s)
			err := Apply(t.Context(), Manifest{Files: []File{f}})
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if !strings.Contains(msg, f.Path) && !strings.Contains(msg, "files[0]") {
				t.Errorf("error %q names neither the file's path %s nor files[0]", msg, f.Path)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q holds the file's content", msg)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
			mustBeClean(t, s)
		})
	}
}

func TestApplyChown(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	s := newSandbox(t)
	if err := os.Chmod(s.vol, 0o700); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Chown: []Chown{{Path: s.vol, UID: 1000, GID: 1001}}, Files: []File{s.inVol("file")}}
	if err := Apply(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	mustOwn(t, s.vol, 1000, 1001, 0o755)
	mustOwn(t, filepath.Join(s.vol, "file"), 1000, 1001, 0o640)

	// A root that is a symbolic link is refused, and what it points at
	// keeps its owner.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(s.outside, link); err != nil {
		t.Fatal(err)
	}
	err := Apply(t.Context(), Manifest{Chown: []Chown{{Path: link, UID: 1000, GID: 1000}}})
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("Apply = %v, want a refused symbolic link", err)
	}
	mustOwn(t, s.outside, 0, 0, 0o755)
}

func TestApplyStopsOnCanceledContext(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Apply(ctx, Manifest{Files: []File{s.inVol("file")}}); err == nil {
		t.Fatal("Apply succeeded after its context was canceled")
	}
	if _, err := os.Lstat(filepath.Join(s.vol, "file")); err == nil {
		t.Error("a file was written after the context was canceled")
	}
}

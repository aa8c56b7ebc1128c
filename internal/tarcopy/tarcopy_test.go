package tarcopy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/internal/tarcopy/tartest"
)

func TestEntryPath(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, top, base string
		want            string
		skip            bool
		wantErr         bool
	}{
		{name: "out", top: "out", base: "out", want: "out"},
		{name: "out/", top: "out", base: "new", want: "new"},
		{name: "out/a/b", top: "out", base: "new", want: "new/a/b"},
		{name: "./out/a", top: "out", base: "out", want: "out/a"},
		{name: "outer/a", top: "out", base: "out", wantErr: true},
		{name: "other", top: "out", base: "out", wantErr: true},
		{name: "out/../x", top: "out", base: "out", wantErr: true},
		{name: "out/../../x", top: "out", base: "out", wantErr: true},
		{name: "/etc/passwd", top: "out", base: "out", wantErr: true},
		{name: "/out/a", top: "out", base: "out", wantErr: true},
		{name: "../out/a", top: "out", base: "out", wantErr: true},
		{name: "./", top: ".", skip: true},
		{name: "./a/b", top: ".", want: "a/b"},
		{name: "a", top: ".", want: "a"},
		{name: "../a", top: ".", wantErr: true},
		{name: "/a", top: ".", wantErr: true},
		{name: "a/../../b", top: ".", wantErr: true},
	}
	for _, tc := range cases {
		got, ok, err := entryPath(tc.name, tc.top, tc.base)
		switch {
		case tc.wantErr:
			if err == nil {
				t.Errorf("entryPath(%q, %q, %q) = %q, want an error", tc.name, tc.top, tc.base, got)
			}
		case err != nil:
			t.Errorf("entryPath(%q, %q, %q): %v", tc.name, tc.top, tc.base, err)
		case ok == tc.skip || filepath.ToSlash(got) != tc.want:
			t.Errorf("entryPath(%q, %q, %q) = %q, %v; want %q", tc.name, tc.top, tc.base, got, ok, tc.want)
		}
	}
}

// TestExtractAttacks plays a hostile agent: CopyOut extracts a stream the
// guest writes. Nothing may be written outside the destination, nor
// through a link; every case checks the victims beside it.
func TestExtractAttacks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		top     string
		entries []tartest.Entry
		prepare func(t *testing.T, dst, victim string)
		wantErr string
		// skipped names an entry that must not exist afterwards (a link
		// out, skipped rather than refused).
		skipped string
	}{
		{name: "dot-dot names", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "w/../../victim", Body: "evil"}},
			wantErr: "outside the destination"},
		{name: "dot-dot at the top", entries: []tartest.Entry{{Name: "../victim", Body: "evil"}}, wantErr: "outside the destination"},
		{name: "absolute name", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "VICTIM", Body: "evil"}}, wantErr: "outside the destination"},
		{name: "another top", entries: []tartest.Entry{{Name: "other/x", Body: "evil"}}, wantErr: "outside the destination"},
		{name: "contents with dot-dot", top: ".", entries: []tartest.Entry{{Name: "./", Dir: true}, {Name: "./../victim", Body: "evil"}},
			wantErr: "outside the destination"},
		{name: "a link out then a file through it", entries: []tartest.Entry{
			{Name: "w/", Dir: true}, {Name: "w/l", Link: "VICTIM_DIR"}, {Name: "w/l/pwned", Body: "evil"},
		}}, // the link is skipped: w/l becomes a directory of the copy
		{name: "a link up to the root then a file through it", entries: []tartest.Entry{
			{Name: "w/", Dir: true}, {Name: "w/l", Link: ".."}, {Name: "w/l/victim-in-dst", Body: "evil"},
		}},
		{name: "the top is a link up", entries: []tartest.Entry{
			{Name: "w", Link: "."}, {Name: "w/victim-in-dst", Body: "evil"},
		}},
		{name: "a link within then a file through it", entries: []tartest.Entry{
			{Name: "w/", Dir: true}, {Name: "w/d/", Dir: true}, {Name: "w/l", Link: "d"}, {Name: "w/l/x", Body: "evil"},
		}, wantErr: "is a symbolic link"},
		{name: "a file over a link already on disk", entries: []tartest.Entry{
			{Name: "w/", Dir: true}, {Name: "w/x", Body: "evil"},
		}, prepare: func(t *testing.T, dst, victim string) {
			tartest.Mkdir(t, filepath.Join(dst, "w"))
			if err := os.Symlink(victim, filepath.Join(dst, "w", "x")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a file below a link already on disk", entries: []tartest.Entry{
			{Name: "w/", Dir: true}, {Name: "w/d/victim", Body: "evil"},
		}, prepare: func(t *testing.T, dst, victim string) {
			tartest.Mkdir(t, filepath.Join(dst, "w"))
			if err := os.Symlink(filepath.Dir(victim), filepath.Join(dst, "w", "d")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "is a symbolic link"},
		{name: "an absolute link", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "w/l", Link: "VICTIM"}}, skipped: "w/l"},
		{name: "a relative link out", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "w/l", Link: "../../victim"}}, skipped: "w/l"},
		{name: "a link to the destination's directory", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "w/l", Link: ".."}}, skipped: "w/l"},
		// Each stays inside read as text; on disk b goes through a, which
		// climbs two levels, and out of the copy.
		{name: "a link out through a link of the same archive", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "w/d1/", Dir: true},
			{Name: "w/d1/d2/", Dir: true}, {Name: "w/d1/d2/a", Link: "../.."}, {Name: "w/d1/d2/b", Link: "a/../../victim"}}, skipped: "w/d1/d2/b"},
		{name: "a hard link out", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "w/h", Hardlink: "../victim-in-dst"}},
			wantErr: "outside the destination"},
		{name: "a hard link to an absolute path", entries: []tartest.Entry{{Name: "w/", Dir: true}, {Name: "w/h", Hardlink: "VICTIM"}},
			wantErr: "outside the destination"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			victimDir := filepath.Join(base, "victim-dir")
			victim := filepath.Join(base, "victim")
			tartest.Mkdir(t, victimDir)
			tartest.WriteFile(t, victim, "safe")
			dst := filepath.Join(base, "dst")
			tartest.Mkdir(t, dst)
			inDst := filepath.Join(dst, "victim-in-dst")
			tartest.WriteFile(t, inDst, "safe")
			if tc.prepare != nil {
				tc.prepare(t, dst, victim)
			}
			for i := range tc.entries {
				e := &tc.entries[i]
				e.Name = strings.ReplaceAll(e.Name, "VICTIM", victim)
				e.Link = strings.ReplaceAll(strings.ReplaceAll(e.Link, "VICTIM_DIR", victimDir), "VICTIM", victim)
				e.Hardlink = strings.ReplaceAll(e.Hardlink, "VICTIM", victim)
			}
			top := tc.top
			if top == "" {
				top = "w"
			}
			err := Extract(t.Context(), tartest.Of(t, tc.entries...), top, dst)
			if tc.wantErr != "" {
				if err == nil || !matchesAny(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
			}
			for _, v := range []string{victim, inDst} {
				if b, err := os.ReadFile(v); err != nil || string(b) != "safe" {
					t.Errorf("%s: %q, %v", v, b, err)
				}
			}
			if es, _ := os.ReadDir(victimDir); len(es) != 0 {
				t.Errorf("written into the victim directory: %v", es)
			}
			if tc.skipped != "" {
				if _, err := os.Lstat(filepath.Join(dst, tc.skipped)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: not skipped (%v)", tc.skipped, err)
				}
			}
		})
	}
}

func matchesAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// TestExtractReplacesAndCreates: an existing file is replaced, missing
// directories below the top are made.
func TestExtractReplacesAndCreates(t *testing.T) {
	t.Parallel()
	dst := filepath.Join(t.TempDir(), "out.txt")
	if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Extract(t.Context(), tartest.Of(t, tartest.Entry{Name: "in.txt", Body: "new"}), "in.txt", dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "new" {
		t.Fatalf("out.txt = %q", b)
	}
	dir := t.TempDir()
	if err := Extract(t.Context(), tartest.Of(t, tartest.Entry{Name: "tree/", Dir: true}, tartest.Entry{Name: "tree/a/b", Body: "deep"}), "tree", dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tree", "a", "b")); string(b) != "deep" {
		t.Fatalf("tree/a/b = %q", b)
	}
}

// TestTarRoundTrip writes what CopyIn sends and extracts it as CopyOut
// does, with docker cp's destinations.
func TestTarRoundTrip(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	tree := filepath.Join(src, "tree")
	tartest.Mkdir(t, filepath.Join(tree, "sub"))
	tartest.WriteFile(t, filepath.Join(tree, "a"), "A")
	tartest.WriteFile(t, filepath.Join(tree, "sub", "b"), "B")
	if err := os.Symlink("sub/b", filepath.Join(tree, "l")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(src, "f.txt")
	tartest.WriteFile(t, file, "F")
	if err := os.Chmod(file, 0o4755); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name     string
		src, as  string // as is the top entry's name, as CopyIn gives it
		top      string // the top as CopyOut sees it
		existing bool   // dst exists as a directory
		want     map[string]string
	}{
		{name: "file to a new name", src: file, as: "f.txt", top: "f.txt", want: map[string]string{"": "F"}},
		{name: "file into a directory", src: file, as: "f.txt", top: "f.txt", existing: true, want: map[string]string{"f.txt": "F"}},
		{name: "directory to a new name", src: tree, as: "tree", top: "tree",
			want: map[string]string{"a": "A", "sub/b": "B", "l": "->sub/b"}},
		{name: "directory into a directory", src: tree, as: "tree", top: "tree", existing: true,
			want: map[string]string{"tree/a": "A", "tree/sub/b": "B", "tree/l": "->sub/b"}},
		{name: "contents", src: tree + "/.", as: "", top: ".", existing: true,
			want: map[string]string{"a": "A", "sub/b": "B", "l": "->sub/b"}},
		{name: "contents to a new directory", src: tree + "/.", as: "", top: ".",
			want: map[string]string{"a": "A", "sub/b": "B"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := Write(&buf, tc.src, tc.as, &Owner{1000, 1000}); err != nil {
				t.Fatal(err)
			}
			checkOwners(t, buf.Bytes(), 1000, 1000)
			dst := filepath.Join(t.TempDir(), "dst")
			if tc.existing {
				tartest.Mkdir(t, dst)
			}
			if err := Extract(context.Background(), &buf, tc.top, dst); err != nil {
				t.Fatal(err)
			}
			for rel, want := range tc.want {
				p := filepath.Join(dst, rel)
				if target, ok := strings.CutPrefix(want, "->"); ok {
					if got, err := os.Readlink(p); err != nil || got != target {
						t.Errorf("%s: link to %q, %v; want %q", rel, got, err, target)
					}
					continue
				}
				b, err := os.ReadFile(p)
				if err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", rel, b, err, want)
				}
				if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSetuid != 0 {
					t.Errorf("%s: setuid kept (%v)", rel, fi.Mode())
				}
			}
		})
	}
}

// TestWriteParents: CopyIn's missing parents come first, each inside
// the one before, owned like the rest.
func TestWriteParents(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	tartest.WriteFile(t, file, "F")
	var buf bytes.Buffer
	if err := Write(&buf, file, "x/y/g", &Owner{7, 8}); err != nil {
		t.Fatal(err)
	}
	checkOwners(t, buf.Bytes(), 7, 8)
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if want := []string{"x/", "x/y/", "x/y/g"}; !slices.Equal(names, want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
}

func checkOwners(t *testing.T, b []byte, uid, gid int) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != uid || h.Gid != gid || h.Uname != "" {
			t.Errorf("%s: owner %d:%d (%q), want %d:%d", h.Name, h.Uid, h.Gid, h.Uname, uid, gid)
		}
	}
}

func TestExtractEmpty(t *testing.T) {
	t.Parallel()
	err := Extract(t.Context(), tartest.Of(t), "w", filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(err.Error(), "empty archive") {
		t.Fatalf("err = %v", err)
	}
}

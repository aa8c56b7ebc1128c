package docker

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	dir              bool
}

func tarOf(t *testing.T, es ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestUntarStaysInside(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		entries []entry
		prepare func(dst, victim string)
		wantErr string
	}{
		{name: "a link then a file through it", entries: []entry{
			{name: "w/", dir: true}, {name: "w/l", link: "VICTIM_DIR"}, {name: "w/l/pwned", body: "evil"},
		}},
		{name: "a file over a link already on disk", entries: []entry{
			{name: "w/", dir: true}, {name: "w/x", body: "evil"},
		}, prepare: func(dst, victim string) {
			_ = os.MkdirAll(filepath.Join(dst, "w"), 0o755)
			_ = os.Symlink(victim, filepath.Join(dst, "w", "x"))
		}},
		{name: "dot-dot names", entries: []entry{{name: "w/", dir: true}, {name: "w/../../pwned", body: "evil"}},
			wantErr: "outside the destination"},
		{name: "another top", entries: []entry{{name: "other/pwned", body: "evil"}}, wantErr: "outside the destination"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			victimDir := filepath.Join(base, "victim-dir")
			victim := filepath.Join(base, "victim")
			if err := os.MkdirAll(victimDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(victim, []byte("safe"), 0o644); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(base, "dst")
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.prepare != nil {
				tc.prepare(dst, victim)
			}
			for i := range tc.entries {
				tc.entries[i].link = strings.ReplaceAll(tc.entries[i].link, "VICTIM_DIR", victimDir)
			}
			err := untarTo(tarOf(t, tc.entries...), "w", dst)
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("untarTo = %v, want %q", err, tc.wantErr)
			}
			if b, _ := os.ReadFile(victim); string(b) != "safe" {
				t.Fatalf("the victim file was overwritten: %q", b)
			}
			if _, err := os.Stat(filepath.Join(victimDir, "pwned")); err == nil {
				t.Fatal("a file was written outside the destination")
			}
			if _, err := os.Stat(filepath.Join(base, "pwned")); err == nil {
				t.Fatal("a file was written outside the destination")
			}
		})
	}
}

func TestUntarReplacesAndCreates(t *testing.T) {
	t.Parallel()
	dst := filepath.Join(t.TempDir(), "out.txt")
	if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := untarTo(tarOf(t, entry{name: "in.txt", body: "new"}), "in.txt", dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "new" {
		t.Fatalf("out.txt = %q", b)
	}
	dir := t.TempDir()
	if err := untarTo(tarOf(t, entry{name: "tree/", dir: true}, entry{name: "tree/a/b", body: "deep"}), "tree", dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tree", "a", "b")); string(b) != "deep" {
		t.Fatalf("tree/a/b = %q", b)
	}
}

// Package tartest builds tar streams for tests of copies, hostile ones
// included.
package tartest

import (
	"archive/tar"
	"bytes"
	"os"
	"testing"
)

// Entry is one entry of a stream: a file with Body, or a directory (Dir),
// a symbolic link to Link, or a hard link to Hardlink.
type Entry struct {
	Name, Body, Link, Hardlink string
	Dir                        bool
}

// Of returns a tar stream of the entries, in order, as they are: names
// and link targets are not checked.
func Of(t testing.TB, es ...Entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Body)), Typeflag: tar.TypeReg}
		switch {
		case e.Dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Link, 0
		case e.Hardlink != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.Hardlink, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// Mkdir makes directory p and its parents on the host, mode 0755.
func Mkdir(t testing.TB, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// WriteFile writes body to the host file p, mode 0644.
func WriteFile(t testing.TB, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

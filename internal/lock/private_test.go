//go:build unix

package lock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A lock directory that another user could steer is refused, and nothing
// is written through it.
func TestAcquireRefusesAnUnsafeDirectory(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ dir, want string }{
		{link, "is a symbolic link"},
		{open, "is writable by others (mode -rwxrwxrwx)"},
		{file, "not a directory"},
	} {
		s, err := Acquire(t.Context(), tt.dir, []string{"b"}, 0)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			s.Release()
			t.Errorf("Acquire(%s) = %v, want an error containing %q", tt.dir, err, tt.want)
		}
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("a lock was written through the symbolic link: %v", entries)
	}
	// A private directory works.
	s, err := Acquire(t.Context(), filepath.Join(base, "private"), []string{"b"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Release()
}

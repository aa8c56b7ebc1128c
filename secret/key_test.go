package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadKey(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state")
	key, err := LoadKey(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != KeyLen || bytes.Equal(key, make([]byte, KeyLen)) {
		t.Fatalf("key %x", key)
	}
	path := filepath.Join(state, "bottle-apply", "secret.key")
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode(), want)
		}
	}
	again, err := LoadKey(state)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("second LoadKey = %x, %v; want the same key", again, err)
	}
	if left, _ := filepath.Glob(filepath.Join(state, "bottle-apply", ".secret.key-*")); len(left) != 0 {
		t.Errorf("temporary files left: %q", left)
	}
	other, err := LoadKey(filepath.Join(t.TempDir(), "other"))
	if err != nil || bytes.Equal(other, key) {
		t.Fatalf("another state directory: %x, %v; want a new key", other, err)
	}
}

// TestLoadKeyExistingDir keeps the mode of a state directory that exists.
func TestLoadKeyExistingDir(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	dir := filepath.Join(state, "bottle-apply")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(state); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("state directory mode changed to %v", fi.Mode())
	}
}

// TestLoadKeyRace makes the key from many goroutines at once: all get the
// same one.
func TestLoadKeyRace(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	keys := make([][]byte, 16)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = LoadKey(state) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("LoadKey #%d = %x, %v; #0 = %x", i, keys[i], errs[i], keys[0])
		}
	}
}

func TestLoadKeyRefuses(t *testing.T) {
	t.Parallel()
	good := bytes.Repeat([]byte{1}, KeyLen)
	tests := []struct {
		name  string
		setup func(path string) error
		mode  os.FileMode // set after setup, past the umask
		want  string      // after the path
	}{
		{"group readable", func(p string) error { return os.WriteFile(p, good, 0o600) }, 0o640,
			" has mode 0640, so others than its owner may read or change it; run chmod 600 PATH (or remove it to make a new key: agents with secrets are then replaced once)"},
		{"world readable", func(p string) error { return os.WriteFile(p, good, 0o600) }, 0o604,
			" has mode 0604, so others than its owner may read or change it; run chmod 600 PATH (or remove it to make a new key: agents with secrets are then replaced once)"},
		{"group writable", func(p string) error { return os.WriteFile(p, good, 0o600) }, 0o620,
			" has mode 0620, so others than its owner may read or change it; run chmod 600 PATH (or remove it to make a new key: agents with secrets are then replaced once)"},
		{"short", func(p string) error { return os.WriteFile(p, good[:16], 0o600) }, 0,
			" holds 16 bytes, want 32; remove it, and bottle-apply makes a new key (agents with secrets are then replaced once)"},
		{"long", func(p string) error { return os.WriteFile(p, append(good, '\n'), 0o600) }, 0,
			" holds 33 bytes, want 32; remove it, and bottle-apply makes a new key (agents with secrets are then replaced once)"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }, 0,
			" is not a regular file; remove it, and bottle-apply makes a new key (agents with secrets are then replaced once)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			path := filepath.Join(state, "bottle-apply", "secret.key")
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := tt.setup(path); err != nil {
				t.Fatal(err)
			}
			if tt.mode != 0 {
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			key, err := LoadKey(state)
			want := "secret key " + path + strings.ReplaceAll(tt.want, "PATH", path)
			if err == nil || err.Error() != want || key != nil {
				t.Fatalf("LoadKey = %x, %v\nwant error %s", key, err, want)
			}
		})
	}
	if _, err := LoadKey(""); err == nil || err.Error() != "no state directory for the secret key: set $XDG_STATE_HOME or $HOME" {
		t.Errorf("no state directory: %v", err)
	}
}

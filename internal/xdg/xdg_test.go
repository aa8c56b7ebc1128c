package xdg

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Not parallel: it sets the environment.
func TestDirs(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_STATE_HOME", "/xdg/state")
	t.Setenv("XDG_CACHE_HOME", "/xdg/cache")
	if got := StateDir("smolvm"); got != "/xdg/state/bottle-apply/smolvm" {
		t.Errorf("StateDir = %s", got)
	}
	if got := CacheDir("smolvm"); got != "/xdg/cache/bottle-apply/smolvm" {
		t.Errorf("CacheDir = %s", got)
	}
	if got, want := LockDir("unix:///var/run/docker.sock"), LockDirIn("/xdg/state", "unix:///var/run/docker.sock"); got != want ||
		filepath.Dir(got) != "/xdg/state/bottle-apply/locks" {
		t.Errorf("LockDir = %s, want %s under /xdg/state/bottle-apply/locks", got, want)
	}
	if LockDir("a") == LockDir("b") {
		t.Error("two engines share a lock directory")
	}
	// A relative XDG_STATE_HOME is ignored, as the XDG rules say.
	t.Setenv("XDG_STATE_HOME", "relative/ignored")
	if got := StateHome(); got != filepath.Join(home, ".local", "state") {
		t.Errorf("StateHome with a relative XDG_STATE_HOME = %s", got)
	}
	// No home at all: no state directory, and locks in the temporary
	// directory, per user.
	t.Setenv("HOME", "")
	if got := StateDir("x"); got != "" {
		t.Errorf("StateDir without a home = %q", got)
	}
	if got := filepath.Dir(filepath.Dir(filepath.Dir(LockDir("e")))); got != filepath.Join(os.TempDir(), "bottle-apply-"+strconv.Itoa(os.Geteuid())) {
		t.Errorf("LockDir without a home is under %s", got)
	}
}

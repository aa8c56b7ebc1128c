// Package xdg says where bottle-apply keeps its files, in one place: state
// (the secret key, smolvm's ownership records, the locks) under
// $XDG_STATE_HOME, caches (smolvm's image archives and packs) under
// $XDG_CACHE_HOME, each in a bottle-apply directory, as the XDG base
// directory rules say (a relative variable is ignored).
package xdg

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
)

// App is the directory of bottle-apply's own under each base.
const App = "bottle-apply"

// StateHome is $XDG_STATE_HOME when it is absolute, else ~/.local/state;
// "" when neither is known.
func StateHome() string {
	if base := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(base) {
		return base
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".local", "state")
}

// StateDir is bottle-apply's state directory for sub (joined below
// StateHome()/bottle-apply); "" when there is no state home.
func StateDir(sub ...string) string {
	base := StateHome()
	if base == "" {
		return ""
	}
	return filepath.Join(append([]string{base, App}, sub...)...)
}

// CacheDir is bottle-apply's cache directory for sub: below the user cache
// directory ($XDG_CACHE_HOME or ~/.cache on Linux); "" when there is none.
func CacheDir(sub ...string) string {
	base, err := os.UserCacheDir()
	if err != nil || base == "" {
		return ""
	}
	return filepath.Join(append([]string{base, App}, sub...)...)
}

// LockDir holds the bottles' locks for one engine (its key names it: the
// same bottle name on two engines is two bottles). Without a state home it
// is a directory of this user's own in the temporary directory.
func LockDir(engineKey string) string {
	base := StateHome()
	if base == "" {
		base = filepath.Join(os.TempDir(), App+"-"+strconv.Itoa(os.Geteuid()))
	}
	return LockDirIn(base, engineKey)
}

// LockDirIn is LockDir under the state home base.
func LockDirIn(base, engineKey string) string {
	sum := sha256.Sum256([]byte(engineKey))
	return filepath.Join(base, App, "locks", hex.EncodeToString(sum[:])[:12])
}

// CADir is where bottle-apply keeps the CA of bottle name on one engine
// (its key names it, as LockDir's does): under the state home, "" when
// there is none.
func CADir(engineKey, name string) string {
	base := StateHome()
	if base == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(engineKey))
	return filepath.Join(base, App, "ca", hex.EncodeToString(sum[:])[:12], name)
}

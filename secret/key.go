package secret

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyLen is the length of the key LoadKey makes, in bytes.
const KeyLen = 32

// KeyFile is where LoadKey keeps the key, under the state directory.
const KeyFile = "bottle-apply/secret.key"

// LoadKey returns the key that digests secrets, from
// stateDir/bottle-apply/secret.key. The first call makes it: KeyLen random
// bytes in a file of mode 0600 (its directory made 0700 if missing); later
// calls, of this process or another, read the same key, so that an
// unchanged secret keeps its digest and its agent. A key file that its
// group or others may read or write, or of the wrong size, is refused.
func LoadKey(stateDir string) ([]byte, error) {
	if stateDir == "" {
		return nil, errors.New("no state directory for the secret key: set $XDG_STATE_HOME or $HOME")
	}
	path := filepath.Join(stateDir, KeyFile)
	key, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("make the secret key: %w", err)
	}
	if err := createKey(path); err != nil {
		return nil, fmt.Errorf("make the secret key %s: %w", path, err)
	}
	return readKey(path)
}

// readKey reads and checks a key file.
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read the secret key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read the secret key: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("secret key %s is not a regular file; remove it, and bottle-apply makes a new key "+
			"(agents with secrets are then replaced once)", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("secret key %s has mode %#o, so others than its owner may read or change it; "+
			"run chmod 600 %s (or remove it to make a new key: agents with secrets are then replaced once)", path, fi.Mode().Perm(), path)
	}
	key, err := io.ReadAll(io.LimitReader(f, KeyLen+1))
	if err != nil {
		return nil, fmt.Errorf("read the secret key: %w", err)
	}
	if len(key) != KeyLen {
		return nil, fmt.Errorf("secret key %s holds %d bytes, want %d; remove it, and bottle-apply makes a new key "+
			"(agents with secrets are then replaced once)", path, len(key), KeyLen)
	}
	return key, nil
}

// createKey writes a new key to a temporary file and links it into place,
// so that no reader ever sees a partial key and, when two runs race, both
// end up with the one that was linked first.
func createKey(path string) error {
	key := make([]byte, KeyLen)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret.key-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	err = os.Link(tmp.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		return nil // another run made it first: use theirs
	}
	return err
}

// Package secret resolves the secrets a spec names (spec.agent.secretEnv)
// into their values, reads the files it puts in agents (spec.agent.files,
// files.go), and keeps the key that digests both.
//
// Values go into bottle.Bottle.Secrets and from there to the providers, which
// hand them to the agent. Everything else sees a digest: config hashes and
// labels hold an HMAC of each value under a key of the user's
// (LoadKey), so that a label cannot be checked against guessed values by
// anyone without that key. No error of this package holds a value.
package secret

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// MaxFileSize is the largest secret file Resolve reads, in bytes.
const MaxFileSize = 64 << 10

// DigestLen is the length of a secret's digest, in hex digits.
const DigestLen = 24

// MinKeyLen is the shortest key Resolve accepts, in bytes.
const MinKeyLen = 16

// Resolve reads the value of every secret of every bottle and sets
// b.Secrets, sorted by name, each with its Digest: the first
// DigestLen hex digits of HMAC-SHA256(key, name + "\x00" + value). A
// valueFrom.env secret is the variable's value as getenv returns it (nil
// means os.Getenv); a valueFrom.file secret is the file's contents, without
// one trailing newline, read through an os.Root on the directory of the
// bottle's spec file, so that neither the path nor a symlink can leave it.
// A spec read from standard input has no directory: its secrets must come
// from the environment.
//
// Resolve reports every problem of every bottle, each naming the bottle, the
// secret and its source and saying what to do; none holds a value. On an
// error the bottles may be partly resolved and must not be applied.
func Resolve(bottles []bottle.Bottle, key []byte, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	for i := range bottles {
		b := &bottles[i]
		a := &b.Spec.Agent
		b.Secrets = nil
		if len(a.SecretEnv) == 0 {
			continue
		}
		if len(key) < MinKeyLen {
			return fmt.Errorf("internal: a secret key of %d bytes; want at least %d", len(key), MinKeyLen)
		}
		var dir *dirRoot
		for _, name := range slices.Sorted(maps.Keys(a.SecretEnv)) {
			from := a.SecretEnv[name].ValueFrom
			value, err := read(&b.Bottle, from, getenv, &dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("bottle %s: secret %s: %w", b.Metadata.Name, name, err))
				continue
			}
			b.Secrets = append(b.Secrets, bottle.Secret{Name: name, Value: value, Digest: Digest(key, name, value)})
		}
		dir.close()
	}
	return errors.Join(errs...)
}

// Digest is the digest of a secret that stands for its value in config
// hashes: the first DigestLen hex digits of HMAC-SHA256(key, name + "\x00"
// + value).
func Digest(key []byte, name, value string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil))[:DigestLen]
}

// dirRoot is the directory of a bottle's spec file, opened once.
type dirRoot struct {
	path string
	root *os.Root
	err  error
}

func (d *dirRoot) close() {
	if d != nil && d.root != nil {
		_ = d.root.Close()
	}
}

// read returns the value of one secret. Its errors name the source and
// what to do, never the value.
func read(b *spec.Bottle, from spec.ValueFrom, getenv func(string) string, dir **dirRoot) (string, error) {
	v, source, fix, err := readSource(b, from, getenv, dir)
	if err != nil {
		return "", err
	}
	return v, check(v, source, fix)
}

// readSource returns the value a valueFrom names, unchecked, with how
// messages name its source and what fixes it. A valueFrom.env value is the
// variable's; a valueFrom.file value is the file's contents without one
// trailing newline, read through an os.Root on the directory of the spec
// file (opened once in *dir). Its errors name the source and what to do,
// never the value.
func readSource(b *spec.Bottle, from spec.ValueFrom, getenv func(string) string, dir **dirRoot) (v, source, fix string, err error) {
	switch {
	case from.Env != "" && from.File != "", from.Env == "" && from.File == "":
		return "", "", "", fmt.Errorf("valueFrom needs exactly one of env and file")
	case from.Env != "":
		v := getenv(from.Env)
		if v == "" {
			return "", "", "", fmt.Errorf("environment variable %s is not set (or is empty); set %s in the environment of bottle-apply",
				from.Env, from.Env)
		}
		return v, "environment variable " + from.Env, "set " + from.Env + " to the secret itself", nil
	}
	file := from.File
	if msg := spec.CheckSecretFile(file); msg != "" {
		return "", "", "", fmt.Errorf("valueFrom.file: %s", msg)
	}
	switch src := b.Source.File; src {
	case "", spec.Stdin, spec.StdinName:
		return "", "", "", fmt.Errorf("valueFrom.file %q: a spec read from standard input has no directory to read it from; "+
			"use valueFrom.env, or pass the spec with -f FILE", file)
	}
	d := openDir(b, dir)
	shown := filepath.Join(d.path, file) // what the user can look at
	if d.err != nil {
		return "", "", "", fmt.Errorf("file %s: cannot open the spec file's directory: %w", shown, pathErr(d.err))
	}
	v, err = readFile(d.root, file)
	if err != nil {
		return "", "", "", fmt.Errorf("file %s: %w", shown, err)
	}
	return v, "file " + shown, "write the secret into it", nil
}

// openDir opens the directory of b's spec file once, in *dir.
func openDir(b *spec.Bottle, dir **dirRoot) *dirRoot {
	if *dir == nil {
		d := &dirRoot{path: filepath.Dir(b.Source.File)}
		d.root, d.err = os.OpenRoot(d.path)
		*dir = d
	}
	return *dir
}

// secretFile is how readRegular speaks of a secret file.
var secretFile = fileKind{
	max:        MaxFileSize,
	notRegular: "name a file that holds the secret",
	tooLarge:   "a secret file holds the secret only",
	missing:    "create it with the secret in it",
	outside:    "secrets are read only from inside it",
}

// readFile reads a regular file of at most MaxFileSize bytes under root
// and drops one trailing newline ("\n" or "\r\n").
func readFile(root *os.Root, file string) (string, error) {
	data, err := readRegular(root, file, secretFile)
	if err != nil {
		return "", err
	}
	v := string(data)
	if t, ok := strings.CutSuffix(v, "\n"); ok {
		v = strings.TrimSuffix(t, "\r")
	}
	if v == "" {
		return "", errors.New("is empty; write the secret into it")
	}
	return v, nil
}

// fileKind is what a file the spec names is for: its size limit, and what
// the messages of readRegular advise.
type fileKind struct {
	max                                    int64
	notRegular, tooLarge, missing, outside string
}

// readRegular reads a regular file of at most k.max bytes under root, as
// it is. Its errors name neither the file (the caller does) nor any of its
// contents.
func readRegular(root *os.Root, file string, k fileKind) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; it is then
	// refused as not a regular file.
	f, err := root.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, readErr(err, k)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, pathErr(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file (%s); %s", fi.Mode().Type(), k.notRegular)
	}
	tooLarge := fmt.Errorf("is larger than the limit of %d bytes (%s); %s", k.max, size(k.max), k.tooLarge)
	if fi.Size() > k.max {
		return nil, tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, k.max+1))
	if err != nil {
		return nil, pathErr(err)
	}
	if int64(len(data)) > k.max { // it grew since the Stat
		return nil, tooLarge
	}
	return data, nil
}

// size writes a limit in KiB or MiB.
func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// readErr explains why a file could not be opened.
func readErr(err error, k fileKind) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("does not exist; %s (the path is relative to the spec file's directory)", k.missing)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("cannot be read (%w); let the user who runs bottle-apply read it", pathErr(err))
	case strings.Contains(err.Error(), "escapes"):
		// os.Root refuses a symlink (or a path) that leads out of the
		// directory; its error has no sentinel to test.
		return fmt.Errorf("leads out of the spec file's directory (through a symlink?); %s: put the file itself there", k.outside)
	}
	return pathErr(err)
}

// pathErr drops the path an *fs.PathError repeats: messages name the file
// once, as the user wrote it.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// check refuses what cannot be an environment variable's value, without
// quoting it: a NUL byte (execve and the engines refuse it) and bytes that
// are not UTF-8 (the engine's JSON API would silently change them).
func check(v, source, fix string) error {
	switch {
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%s holds a NUL byte, which an environment variable cannot; %s", source, fix)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8, which the engine cannot pass on unchanged; %s", source, fix)
	}
	return nil
}

package secret

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// MaxFileContent is the largest file of spec.agent.files ResolveFiles
// reads, in bytes.
const MaxFileContent = 1 << 20

// agentFile is how readRegular speaks of a file of spec.agent.files.
var agentFile = fileKind{
	max:        MaxFileContent,
	notRegular: "name a regular file",
	tooLarge:   "put larger files in a volume",
	missing:    "create it, or fix the path",
	outside:    "files are read only from inside it",
}

// ResolveFiles reads every file of every bottle's spec.agent.files and
// sets b.Files, in the spec's order. A file's content is its content: as
// written, or its source's bytes as they are (any bytes, empty included,
// a trailing newline kept), read like a secret file through an os.Root on
// the directory of the bottle's spec file, so that neither the path nor a
// symlink can leave it, and at most MaxFileContent bytes. Its mode is
// spec.agent.files[].mode, else spec.DefaultFileMode; its owner is its
// owner, else spec.agent.user, else 0:0. Its Digest is FileDigest.
//
// ResolveFiles reports every problem of every bottle, each naming the
// bottle, the file and its source and saying what to do; none holds
// content. On an error the bottles may be partly resolved (FilesResolved
// is then false) and must not be applied.
func ResolveFiles(bottles []bottle.Bottle, key []byte) error {
	var errs []error
	for i := range bottles {
		b := &bottles[i]
		b.Files = nil
		if len(b.Spec.Agent.Files) == 0 {
			continue
		}
		if len(key) < MinKeyLen {
			return fmt.Errorf("internal: a secret key of %d bytes; want at least %d", len(key), MinKeyLen)
		}
		var dir *dirRoot
		for _, f := range b.Spec.Agent.Files {
			rf, err := resolveFile(&b.Bottle, f, &dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("bottle %s: file %s: %w", b.Metadata.Name, f.Path, err))
				continue
			}
			rf.Digest = FileDigest(key, rf)
			b.Files = append(b.Files, rf)
		}
		dir.close()
	}
	return errors.Join(errs...)
}

// resolveFile reads one file, without its digest.
func resolveFile(b *spec.Bottle, f spec.File, dir **dirRoot) (bottle.File, error) {
	out := bottle.File{Path: f.Path, Mode: spec.DefaultFileMode}
	var err error
	if f.Mode != "" {
		if out.Mode, err = spec.ParseMode(f.Mode); err != nil {
			return out, fmt.Errorf("mode: %w", err)
		}
	}
	switch owner := f.Owner; {
	case owner != "":
		if out.UID, out.GID, err = spec.ParseUser(owner); err != nil {
			return out, fmt.Errorf("owner: %w", err)
		}
	case b.Spec.Agent.User != "":
		if out.UID, out.GID, err = spec.ParseUser(b.Spec.Agent.User); err != nil {
			return out, fmt.Errorf("spec.agent.user: %w", err)
		}
	}
	if f.Source == "" {
		out.Content = []byte(f.Content)
		return out, nil
	}
	if f.Content != "" {
		return out, errors.New("has both source and content; set exactly one")
	}
	if msg := spec.CheckFileSource(f.Source); msg != "" {
		return out, fmt.Errorf("source: %s", msg)
	}
	switch src := b.Source.File; src {
	case "", spec.Stdin, spec.StdinName:
		return out, fmt.Errorf("source %q: a spec read from standard input has no directory to read it from; "+
			"use content, or pass the spec with -f FILE", f.Source)
	}
	if *dir == nil {
		d := &dirRoot{path: filepath.Dir(b.Source.File)}
		d.root, d.err = os.OpenRoot(d.path)
		*dir = d
	}
	d := *dir
	shown := filepath.Join(d.path, f.Source) // what the user can look at
	if d.err != nil {
		return out, fmt.Errorf("source %s: cannot open the spec file's directory: %w", shown, pathErr(d.err))
	}
	if out.Content, err = readRegular(d.root, f.Source, agentFile); err != nil {
		return out, fmt.Errorf("source %s: %w", shown, err)
	}
	return out, nil
}

// FileDigest is the digest of a resolved file that stands for it in config
// hashes: the first DigestLen hex digits of an HMAC-SHA256 under key of
// its path, mode, owner and content, each field length-prefixed, so that
// no two files share an encoding and a short content cannot be guessed
// from a label without the key.
func FileDigest(key []byte, f bottle.File) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("bottle-apply file v1\x00"))
	field := func(b []byte) {
		m.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		m.Write(b)
	}
	field([]byte(f.Path))
	field(binary.BigEndian.AppendUint32(nil, uint32(f.Mode.Perm())))
	field(binary.BigEndian.AppendUint64(nil, uint64(f.UID)))
	field(binary.BigEndian.AppendUint64(nil, uint64(f.GID)))
	field(f.Content)
	return hex.EncodeToString(m.Sum(nil))[:DigestLen]
}

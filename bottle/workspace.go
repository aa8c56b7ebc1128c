package bottle

import (
	"encoding/json"
	"fmt"
	"io/fs"
)

// VolumeName is the engine name of a bottle's named volume:
// bottle-NAME-VOLUME.
func VolumeName(bottleName, volume string) string { return ResourceName(bottleName, volume) }

// File is a resolved spec.agent.files entry: what to write where, as whom.
// Content never appears when a File is formatted or marshalled to JSON:
// only its path, mode, owner and Digest do, as with Secret.
type File struct {
	Path     string
	Content  []byte
	Mode     fs.FileMode
	UID, GID int
	// Digest is a keyed hash of path, mode, owner and content (see
	// package secret), which stands for the file in config hashes.
	Digest string
}

// String shows everything but the content.
func (f File) String() string {
	return fmt.Sprintf("{%s %#o %d:%d %s %s}", f.Path, f.Mode.Perm(), f.UID, f.GID, Redacted, f.Digest)
}

// GoString is the %#v form, with the content redacted.
func (f File) GoString() string {
	return fmt.Sprintf("bottle.File{Path:%q, Content:%q, Mode:%#o, UID:%d, GID:%d, Digest:%q}",
		f.Path, Redacted, f.Mode.Perm(), f.UID, f.GID, f.Digest)
}

// Format makes every verb print a redacted form.
func (f File) Format(s fmt.State, verb rune) {
	formatRedacted(s, verb, f)
}

// MarshalJSON writes everything but the content.
func (f File) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Path    string `json:"path"`
		Content string `json:"content"`
		Mode    string `json:"mode"`
		UID     int    `json:"uid"`
		GID     int    `json:"gid"`
		Digest  string `json:"digest"`
	}{f.Path, Redacted, fmt.Sprintf("%#o", f.Mode.Perm()), f.UID, f.GID, f.Digest})
}

// MarshalText is the String form.
func (f File) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// FilesResolved reports whether Files holds one resolved file for each of
// spec.agent.files: providers refuse to make an agent whose files were
// never read rather than make it without them.
func (b *Bottle) FilesResolved() bool { return len(b.Files) == len(b.Spec.Agent.Files) }

// FileDigests returns "PATH=DIGEST" for each resolved file, in the spec's
// order: what stands for the files in a config hash.
func (b *Bottle) FileDigests() []string {
	out := make([]string, len(b.Files))
	for i, f := range b.Files {
		out[i] = f.Path + "=" + f.Digest
	}
	return out
}

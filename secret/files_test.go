package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// plantedContent is a file's content no error may show.
const plantedContent = "content-planted-7a6b5c"

func filesBottle(name, file, user string, files ...spec.File) bottle.Bottle {
	b := spec.Bottle{Metadata: spec.Metadata{Name: name}, Source: spec.Source{File: file, Line: 1}}
	b.Spec.Agent.Image = "alpine"
	b.Spec.Agent.User = user
	b.Spec.Agent.Files = files
	return bottle.New(b)
}

func TestResolveFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	specFile := filepath.Join(dir, "bottle.yaml")
	write(t, filepath.Join(dir, "claude.json"), "{\"a\": 1}\n", 0o600)
	write(t, filepath.Join(dir, "empty"), "", 0o600)
	write(t, filepath.Join(dir, "binary"), "\x00\xff\r\n", 0o600)
	write(t, filepath.Join(dir, "max"), strings.Repeat("x", MaxFileContent), 0o600)
	write(t, filepath.Join(dir, "sub", "real"), "real\n", 0o600)
	if err := os.Symlink("real", filepath.Join(dir, "sub", "link")); err != nil {
		t.Fatal(err)
	}
	bottles := []bottle.Bottle{
		filesBottle("a", specFile, "1000",
			spec.File{Path: "/root/.claude.json", Source: "./claude.json", Mode: "0600"},
			spec.File{Path: "/etc/inline", Content: plantedContent, Owner: "0:5"},
			spec.File{Path: "/etc/empty-inline"},
			spec.File{Path: "/etc/empty", Source: "empty", Mode: "444"},
			spec.File{Path: "/etc/binary", Source: "binary", Owner: "7"},
			spec.File{Path: "/etc/max", Source: "max"},
			spec.File{Path: "/etc/link", Source: "sub/link"},
		),
		filesBottle("none", specFile, "1000"),
		filesBottle("stdin", spec.StdinName, "", spec.File{Path: "/x", Content: "x"}),
	}
	bottles[1].Files = []bottle.File{{Path: "/stale"}} // dropped
	if err := ResolveFiles(bottles, testKey); err != nil {
		t.Fatal(err)
	}
	want := []bottle.File{
		{Path: "/root/.claude.json", Content: []byte("{\"a\": 1}\n"), Mode: 0o600, UID: 1000, GID: 1000},
		{Path: "/etc/inline", Content: []byte(plantedContent), Mode: 0o644, UID: 0, GID: 5},
		{Path: "/etc/empty-inline", Content: []byte{}, Mode: 0o644, UID: 1000, GID: 1000},
		{Path: "/etc/empty", Content: []byte{}, Mode: 0o444, UID: 1000, GID: 1000},
		{Path: "/etc/binary", Content: []byte("\x00\xff\r\n"), Mode: 0o644, UID: 7, GID: 7},
		{Path: "/etc/max", Content: []byte(strings.Repeat("x", MaxFileContent)), Mode: 0o644, UID: 1000, GID: 1000},
		{Path: "/etc/link", Content: []byte("real\n"), Mode: 0o644, UID: 1000, GID: 1000},
	}
	got := bottles[0].Files
	if len(got) != len(want) {
		t.Fatalf("%d files, want %d: %v", len(got), len(want), got)
	}
	for i, f := range got {
		w := want[i]
		w.Digest = FileDigest(testKey, w)
		if f.Digest != w.Digest || len(f.Digest) != DigestLen {
			t.Errorf("%s: digest %q, want %q", f.Path, f.Digest, w.Digest)
		}
		if f.Path != w.Path || !bytes.Equal(f.Content, w.Content) || f.Mode != w.Mode || f.UID != w.UID || f.GID != w.GID {
			t.Errorf("file %d = %#v (%q), want %#v (%q)", i, f, f.Content, w, w.Content)
		}
	}
	if !bottles[0].FilesResolved() {
		t.Error("FilesResolved = false")
	}
	if f := bottles[1].Files; f != nil {
		t.Errorf("a bottle without files kept %v", f)
	}
	if f := bottles[2].Files; len(f) != 1 || f[0].UID != 0 || f[0].GID != 0 {
		t.Errorf("inline file from stdin, no user: %v", f)
	}
	// No files at all: no key needed.
	if err := ResolveFiles([]bottle.Bottle{filesBottle("none", specFile, "")}, nil); err != nil {
		t.Errorf("no files, no key: %v", err)
	}
}

func TestResolveFilesErrors(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	write(t, filepath.Join(outside, "stolen"), plantedContent, 0o600)
	dir := t.TempDir()
	specFile := filepath.Join(dir, "bottle.yaml")
	write(t, filepath.Join(dir, "big"), strings.Repeat(plantedContent, MaxFileContent/len(plantedContent)+1), 0o600)
	write(t, filepath.Join(dir, "sub", "f"), plantedContent, 0o600)
	for link, target := range map[string]string{"abs": filepath.Join(outside, "stolen"), "up": "../" + filepath.Base(outside) + "/stolen"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		user string
		file spec.File
		want string
	}{
		{"missing", "", spec.File{Path: "/x", Source: "nope"},
			"bottle b: file /x: source " + dir + "/nope: does not exist; create it, or fix the path (the path is relative to the spec file's directory)"},
		{"too large", "", spec.File{Path: "/x", Source: "big"},
			"bottle b: file /x: source " + dir + "/big: is larger than the limit of 1048576 bytes (1 MiB); put larger files in a volume"},
		{"directory", "", spec.File{Path: "/x", Source: "sub"},
			"bottle b: file /x: source " + dir + "/sub: is not a regular file (d---------); name a regular file"},
		{"fifo", "", spec.File{Path: "/x", Source: "fifo"},
			"bottle b: file /x: source " + dir + "/fifo: is not a regular file (p---------); name a regular file"},
		{"absolute symlink", "", spec.File{Path: "/x", Source: "abs"},
			"bottle b: file /x: source " + dir + "/abs: leads out of the spec file's directory (through a symlink?); files are read only from inside it: put the file itself there"},
		{"relative symlink out", "", spec.File{Path: "/x", Source: "up"},
			"bottle b: file /x: source " + dir + "/up: leads out of the spec file's directory (through a symlink?); files are read only from inside it: put the file itself there"},
		{"dot-dot path", "", spec.File{Path: "/x", Source: "sub/../../" + filepath.Base(outside) + "/stolen"},
			"bottle b: file /x: source: \"sub/../../" + filepath.Base(outside) + "/stolen\" holds \"..\"; a file's source must be inside the spec file's directory"},
		{"absolute path", "", spec.File{Path: "/x", Source: filepath.Join(outside, "stolen")},
			"bottle b: file /x: source: \"" + outside + "/stolen\" is an absolute path; write it relative to the spec file's directory"},
		{"both", "", spec.File{Path: "/x", Source: "sub/f", Content: plantedContent},
			"bottle b: file /x: has both source and content; set exactly one"},
		{"bad mode", "", spec.File{Path: "/x", Content: plantedContent, Mode: "999"},
			"bottle b: file /x: mode: \"999\" is not an octal file mode between 0000 and 0777 (e.g. \"0600\")"},
		{"bad owner", "", spec.File{Path: "/x", Content: plantedContent, Owner: "agent"},
			"bottle b: file /x: owner: \"agent\" is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): \"agent\" is not a number; user names are not supported, as the agent's image may not know them"},
		{"bad user", "me", spec.File{Path: "/x", Content: plantedContent},
			"bottle b: file /x: spec.agent.user: \"me\" is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): \"me\" is not a number; user names are not supported, as the agent's image may not know them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bs := []bottle.Bottle{filesBottle("b", specFile, tt.user, tt.file)}
			err := ResolveFiles(bs, testKey)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), plantedContent) {
				t.Errorf("the error shows the content: %v", err)
			}
			if bs[0].FilesResolved() {
				t.Error("FilesResolved = true after an error")
			}
		})
	}
	for _, file := range []string{spec.StdinName, ""} {
		err := ResolveFiles([]bottle.Bottle{filesBottle("b", file, "", spec.File{Path: "/x", Source: "sub/f"})}, testKey)
		want := "bottle b: file /x: source \"sub/f\": a spec read from standard input has no directory to read it from; use content, or pass the spec with -f FILE"
		if err == nil || err.Error() != want {
			t.Errorf("spec file %q: error %v\nwant %s", file, err, want)
		}
	}
	if err := ResolveFiles([]bottle.Bottle{filesBottle("b", specFile, "", spec.File{Path: "/x"})}, []byte("short")); err == nil ||
		err.Error() != "internal: a secret key of 5 bytes; want at least 16" {
		t.Errorf("short key: %v", err)
	}
}

func TestFileDigest(t *testing.T) {
	t.Parallel()
	base := bottle.File{Path: "/a", Content: []byte("x"), Mode: 0o600, UID: 1, GID: 2}
	d := FileDigest(testKey, base)
	if len(d) != DigestLen {
		t.Fatalf("digest %q has %d digits", d, len(d))
	}
	if again := FileDigest(testKey, base); again != d {
		t.Error("the digest is not deterministic")
	}
	changed := map[string]func(f *bottle.File){
		"path":    func(f *bottle.File) { f.Path = "/b" },
		"mode":    func(f *bottle.File) { f.Mode = 0o644 },
		"uid":     func(f *bottle.File) { f.UID = 2 },
		"gid":     func(f *bottle.File) { f.GID = 1 },
		"content": func(f *bottle.File) { f.Content = []byte("y") },
		"empty":   func(f *bottle.File) { f.Content = nil },
		// Fields that run into each other.
		"path into content": func(f *bottle.File) { f.Path, f.Content = "/ax", nil },
		"uid and gid":       func(f *bottle.File) { f.UID, f.GID = 2, 1 },
	}
	for name, change := range changed {
		f := base
		change(&f)
		if FileDigest(testKey, f) == d {
			t.Errorf("changing the %s keeps the digest", name)
		}
	}
	if FileDigest(bytes.Repeat([]byte{8}, KeyLen), base) == d {
		t.Error("another key gives the same digest")
	}
	// Printing a resolved file never shows its content.
	base.Content = []byte(plantedContent)
	base.Digest = FileDigest(testKey, base)
	for _, s := range []string{base.String(), base.GoString()} {
		if strings.Contains(s, plantedContent) {
			t.Errorf("printed: %s", s)
		}
	}
	if FileDigest(testKey, base) == d {
		t.Error("content change kept the digest")
	}
}

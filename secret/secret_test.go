package secret

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// planted is a secret value no error may show.
const planted = "sk-planted-0f1e2d3c"

var testKey = bytes.Repeat([]byte{7}, KeyLen)

func newBottle(name, file string, secrets map[string]spec.ValueFrom) bottle.Bottle {
	b := spec.Bottle{Metadata: spec.Metadata{Name: name}, Source: spec.Source{File: file, Line: 1}}
	b.Spec.Agent.Image = "alpine"
	if secrets != nil {
		b.Spec.Agent.SecretEnv = map[string]spec.SecretSource{}
		for k, v := range secrets {
			b.Spec.Agent.SecretEnv[k] = spec.SecretSource{ValueFrom: v}
		}
	}
	return bottle.New(b)
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte("API_KEY\x00" + planted))
	if got, want := Digest(testKey, "API_KEY", planted), hex.EncodeToString(m.Sum(nil))[:24]; got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
	d := Digest(testKey, "A", "BC")
	for _, other := range []string{Digest(testKey, "AB", "C"), Digest(testKey, "A", "BD"), Digest(bytes.Repeat([]byte{8}, KeyLen), "A", "BC")} {
		if other == d {
			t.Error("different names, values or keys give the same digest")
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	specFile := filepath.Join(dir, "bottle.yaml")
	write(t, filepath.Join(dir, "plain"), "no-newline", 0o600)
	write(t, filepath.Join(dir, "nl"), "with-newline\n", 0o600)
	write(t, filepath.Join(dir, "crlf"), "crlf\r\n", 0o600)
	write(t, filepath.Join(dir, "two"), "two\n\n", 0o600)
	write(t, filepath.Join(dir, "inner", "multi"), "line1\nline2\n", 0o600)
	write(t, filepath.Join(dir, "max"), strings.Repeat("x", MaxFileSize), 0o600)
	if err := os.Symlink("multi", filepath.Join(dir, "inner", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../nl", filepath.Join(dir, "inner", "uplink")); err != nil {
		t.Fatal(err)
	}
	bottles := []bottle.Bottle{
		newBottle("a", specFile, map[string]spec.ValueFrom{
			"Z_ENV": {Env: "TOKEN"}, "PLAIN": {File: "plain"}, "NL": {File: "./nl"}, "CRLF": {File: "crlf"},
			"TWO": {File: "two"}, "MULTI": {File: "inner/multi"}, "LINK": {File: "inner/link"}, "UPLINK": {File: "inner/uplink"},
			"MAX": {File: "max"},
		}),
		newBottle("none", specFile, nil),
		newBottle("stdin-env", spec.StdinName, map[string]spec.ValueFrom{"K": {Env: "TOKEN"}}),
	}
	bottles[1].Secrets = []bottle.Secret{{Name: "STALE"}} // dropped
	if err := Resolve(bottles, testKey, env(map[string]string{"TOKEN": planted})); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"CRLF": "crlf", "LINK": "line1\nline2", "MAX": strings.Repeat("x", MaxFileSize), "MULTI": "line1\nline2", "NL": "with-newline",
		"PLAIN": "no-newline", "TWO": "two\n", "UPLINK": "with-newline", "Z_ENV": planted,
	}
	var names []string
	for _, s := range bottles[0].Secrets {
		names = append(names, s.Name)
		if s.Value != want[s.Name] {
			t.Errorf("%s = %q, want %q", s.Name, s.Value, want[s.Name])
		}
		if s.Digest != Digest(testKey, s.Name, s.Value) {
			t.Errorf("%s: digest %s", s.Name, s.Digest)
		}
	}
	if wantNames := []string{"CRLF", "LINK", "MAX", "MULTI", "NL", "PLAIN", "TWO", "UPLINK", "Z_ENV"}; !reflect.DeepEqual(names, wantNames) {
		t.Errorf("secrets %q, want sorted %q", names, wantNames)
	}
	if s := bottles[1].Secrets; s != nil {
		t.Errorf("a bottle without secretEnv kept %v", s)
	}
	if s := bottles[2].Secrets; len(s) != 1 || s[0].Value != planted {
		t.Errorf("stdin bottle: %v", s)
	}
	// No secrets at all: no key needed.
	if err := Resolve([]bottle.Bottle{newBottle("none", specFile, nil)}, nil, nil); err != nil {
		t.Errorf("no secrets, no key: %v", err)
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	write(t, filepath.Join(outside, "stolen"), planted, 0o600)
	dir := t.TempDir()
	specFile := filepath.Join(dir, "bottle.yaml")
	write(t, filepath.Join(dir, "big"), strings.Repeat(planted, MaxFileSize/len(planted)+1), 0o600)
	write(t, filepath.Join(dir, "empty"), "", 0o600)
	write(t, filepath.Join(dir, "newline"), "\n", 0o600)
	write(t, filepath.Join(dir, "nul"), planted+"\x00", 0o600)
	write(t, filepath.Join(dir, "latin1"), planted+"\xe9", 0o600)
	write(t, filepath.Join(dir, "sub", "f"), planted, 0o600)
	for link, target := range map[string]string{"abs": filepath.Join(outside, "stolen"), "up": "../" + filepath.Base(outside) + "/stolen", "sub/up": "../../" + filepath.Base(outside) + "/stolen"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"NUL": "a\x00" + planted, "BAD_UTF8": planted + "\xff"})
	tests := []struct {
		name string
		b    bottle.Bottle
		want string
	}{
		{"env unset", newBottle("b", specFile, map[string]spec.ValueFrom{"API_KEY": {Env: "ANTHROPIC_API_KEY"}}),
			"bottle b: secret API_KEY: environment variable ANTHROPIC_API_KEY is not set (or is empty); set ANTHROPIC_API_KEY in the environment of bottle-apply"},
		{"env NUL", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {Env: "NUL"}}),
			"bottle b: secret K: environment variable NUL holds a NUL byte, which an environment variable cannot; set NUL to the secret itself"},
		{"env not UTF-8", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {Env: "BAD_UTF8"}}),
			"bottle b: secret K: environment variable BAD_UTF8 is not valid UTF-8, which the engine cannot pass on unchanged; set BAD_UTF8 to the secret itself"},
		{"missing file", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "nope/token"}}),
			"bottle b: secret K: file " + dir + "/nope/token: does not exist; create it with the secret in it (the path is relative to the spec file's directory)"},
		{"too large", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "big"}}),
			"bottle b: secret K: file " + dir + "/big: is larger than the limit of 65536 bytes (64 KiB); a secret file holds the secret only"},
		{"empty", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "empty"}}),
			"bottle b: secret K: file " + dir + "/empty: is empty; write the secret into it"},
		{"only a newline", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "newline"}}),
			"bottle b: secret K: file " + dir + "/newline: is empty; write the secret into it"},
		{"file NUL", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "nul"}}),
			"bottle b: secret K: file " + dir + "/nul holds a NUL byte, which an environment variable cannot; write the secret into it"},
		{"file not UTF-8", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "latin1"}}),
			"bottle b: secret K: file " + dir + "/latin1 is not valid UTF-8, which the engine cannot pass on unchanged; write the secret into it"},
		{"directory", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "sub"}}),
			"bottle b: secret K: file " + dir + "/sub: is not a regular file (d---------); name a file that holds the secret"},
		{"fifo", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "fifo"}}),
			"bottle b: secret K: file " + dir + "/fifo: is not a regular file (p---------); name a file that holds the secret"},
		{"absolute symlink", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "abs"}}),
			"bottle b: secret K: file " + dir + "/abs: leads out of the spec file's directory (through a symlink?); secrets are read only from inside it: put the file itself there"},
		{"relative symlink out", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "up"}}),
			"bottle b: secret K: file " + dir + "/up: leads out of the spec file's directory (through a symlink?); secrets are read only from inside it: put the file itself there"},
		{"symlink out from a subdirectory", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "sub/up"}}),
			"bottle b: secret K: file " + dir + "/sub/up: leads out of the spec file's directory (through a symlink?); secrets are read only from inside it: put the file itself there"},
		{"dot-dot path", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: "sub/../../" + filepath.Base(outside) + "/stolen"}}),
			"bottle b: secret K: valueFrom.file: \"sub/../../" + filepath.Base(outside) + "/stolen\" holds \"..\"; a secret file must be inside the spec file's directory"},
		{"absolute path", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {File: filepath.Join(outside, "stolen")}}),
			"bottle b: secret K: valueFrom.file: \"" + outside + "/stolen\" is an absolute path; write it relative to the spec file's directory"},
		{"stdin", newBottle("b", spec.StdinName, map[string]spec.ValueFrom{"K": {File: "sub/f"}}),
			"bottle b: secret K: valueFrom.file \"sub/f\": a spec read from standard input has no directory to read it from; use valueFrom.env, or pass the spec with -f FILE"},
		{"no source file", newBottle("b", "", map[string]spec.ValueFrom{"K": {File: "sub/f"}}),
			"bottle b: secret K: valueFrom.file \"sub/f\": a spec read from standard input has no directory to read it from; use valueFrom.env, or pass the spec with -f FILE"},
		{"no source", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {}}),
			"bottle b: secret K: valueFrom needs exactly one of env and file"},
		{"two sources", newBottle("b", specFile, map[string]spec.ValueFrom{"K": {Env: "X", File: "y"}}),
			"bottle b: secret K: valueFrom needs exactly one of env and file"},
		{"spec directory gone", newBottle("b", filepath.Join(dir, "gone", "bottle.yaml"), map[string]spec.ValueFrom{"K": {File: "f"}}),
			"bottle b: secret K: file " + dir + "/gone/f: cannot open the spec file's directory: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Resolve([]bottle.Bottle{tt.b}, testKey, getenv)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), planted) {
				t.Errorf("the error shows the value: %v", err)
			}
		})
	}
}

func TestResolveUnreadable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "locked"), planted, 0o000)
	err := Resolve([]bottle.Bottle{newBottle("b", filepath.Join(dir, "x.yaml"), map[string]spec.ValueFrom{"K": {File: "locked"}})}, testKey, nil)
	want := "bottle b: secret K: file " + dir + "/locked: cannot be read (permission denied); let the user who runs bottle-apply read it"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant %s", err, want)
	}
}

// TestResolveAllErrors reports every problem of every bottle, and checks
// the key only when a bottle has secrets.
func TestResolveAllErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bottles := []bottle.Bottle{
		newBottle("one", filepath.Join(dir, "s.yaml"), map[string]spec.ValueFrom{"A": {Env: "UNSET_A"}, "B": {Env: "UNSET_B"}}),
		newBottle("two", filepath.Join(dir, "s.yaml"), map[string]spec.ValueFrom{"C": {File: "missing"}}),
	}
	err := Resolve(bottles, testKey, env(nil))
	want := "bottle one: secret A: environment variable UNSET_A is not set (or is empty); set UNSET_A in the environment of bottle-apply\n" +
		"bottle one: secret B: environment variable UNSET_B is not set (or is empty); set UNSET_B in the environment of bottle-apply\n" +
		"bottle two: secret C: file " + dir + "/missing: does not exist; create it with the secret in it (the path is relative to the spec file's directory)"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	if err := Resolve(bottles, []byte("short"), env(nil)); err == nil || err.Error() != "internal: a secret key of 5 bytes; want at least 16" {
		t.Errorf("short key: %v", err)
	}
}

// A spec file named relative to the working directory reads its secrets
// relative to the same directory.
func TestResolveRelativeSpec(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "specs", "tok"), planted+"\n", 0o600)
	t.Chdir(dir)
	bs := []bottle.Bottle{newBottle("r", "specs/b.yaml", map[string]spec.ValueFrom{"T": {File: "tok"}})}
	if err := Resolve(bs, testKey, nil); err != nil || bs[0].Secrets[0].Value != planted {
		t.Fatalf("Resolve = %v, %v", err, bs[0].Secrets)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/internal/fakesmolvm/fakebin"
)

// fixedNow is FAKE_SMOLVM_NOW in tests, so created_at is known.
const fixedNow = 1750000000

// fake is one state directory and dialect of the fake smolvm.
type fake struct {
	t     *testing.T
	bin   string
	state string
	env   []string
}

func newFake(t *testing.T, version string, env ...string) *fake {
	t.Helper()
	f := &fake{t: t, bin: fakebin.Build(t), state: t.TempDir()}
	f.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"FAKE_SMOLVM_STATE=" + f.state,
		"FAKE_SMOLVM_VERSION=" + version,
		"FAKE_SMOLVM_NOW=1750000000",
	}, env...)
	return f
}

// result is what one invocation gave.
type result struct {
	stdout, stderr string
	code           int
}

// run invokes the fake with args, stdin as input and extra environment.
func (f *fake) runEnv(env []string, stdin string, args ...string) result {
	f.t.Helper()
	cmd := exec.CommandContext(f.t.Context(), f.bin, args...)
	cmd.Env = append(append([]string{}, f.env...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		f.t.Fatalf("smolvm %q: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

func (f *fake) run(args ...string) result {
	f.t.Helper()
	return f.runEnv(nil, "", args...)
}

// must runs args and fails the test unless it exits 0.
func (f *fake) must(args ...string) result {
	f.t.Helper()
	r := f.run(args...)
	if r.code != 0 {
		f.t.Fatalf("smolvm %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// ls returns "machine ls --json" decoded.
func (f *fake) ls() []map[string]any {
	f.t.Helper()
	r := f.must("machine", "ls", "--json")
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		f.t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	return out
}

// machine returns the ls --json object of name, or nil.
func (f *fake) machine(name string) map[string]any {
	f.t.Helper()
	for _, m := range f.ls() {
		if m["name"] == name {
			return m
		}
	}
	return nil
}

// stateBytes is machines.json as it is on disk ("" when absent).
func (f *fake) stateBytes() string {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join(f.state, "machines.json"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return string(data)
}

// argv returns the lines of argv.log.
func (f *fake) argv() [][]string {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join(f.state, "argv.log"))
	if err != nil {
		f.t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var a []string
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			f.t.Fatalf("argv.log line %q: %v", line, err)
		}
		out = append(out, a)
	}
	return out
}

func (f *fake) root(name string) string { return filepath.Join(f.state, "roots", name) }

// nameArgs is how the dialect passes a name to create and delete.
func nameArgs(version, name string) []string {
	if version == v193 {
		return []string{"--name", name}
	}
	return []string{name}
}

func createArgs(version, name string, flags ...string) []string {
	return append(append([]string{"machine", "create"}, nameArgs(version, name)...), flags...)
}

func deleteArgs(version, name string, flags ...string) []string {
	return append(append([]string{"machine", "delete"}, nameArgs(version, name)...), flags...)
}

func checkResult(t *testing.T, what string, got, want result) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got: exit %d\n  stdout %q\n  stderr %q\nwant: exit %d\n  stdout %q\n  stderr %q",
			what, got.code, got.stdout, got.stderr, want.code, want.stdout, want.stderr)
	}
}

func createdOut(name string, cpus, mem int) string {
	return "Created machine: " + name + "\n" +
		"  CPUs: " + itoa(cpus) + ", Memory: " + itoa(mem) + " MiB\n" +
		"\nUse 'smolvm machine start --name " + name + "' to start the machine\n" +
		"Then use 'smolvm machine exec --name " + name + " -- <command>' to run commands\n"
}

func itoa(n int) string { return strconv.Itoa(n) }

var dialects = []string{v080, v193}

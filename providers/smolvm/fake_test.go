package smolvm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bottle-apply/bottle-apply/guest"
)

// fakeRunner replays a script of calls in exact order, like kubernetes/utils
// exec/testing FakeExec with ExactOrder: an unexpected argv fails the test
// at once, and so do entries left over at the end. It also appends to a
// shared event log, so that tests can check the order of runner calls and
// image-source calls.
type fakeRunner struct {
	t      *testing.T
	mu     sync.Mutex
	script []call
	next   int
	events *[]string
}

// call is one expected command and what it does.
type call struct {
	argv   []string
	stdout string
	err    error  // what Run returns; Stream returns it only with code -1
	code   int    // Stream: the exit code
	do     func() // a side effect, such as the files pack create writes
	// check sees the argv as run, for arguments the script cannot know
	// (anyArg): a temporary file's path.
	check func(argv []string)
}

// anyArg in a scripted argv matches any one argument.
const anyArg = "\x00any"

func newFakeRunner(t *testing.T, events *[]string, script ...call) *fakeRunner {
	t.Helper()
	if events == nil {
		events = new([]string)
	}
	f := &fakeRunner{t: t, script: script, events: events}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.next < len(f.script) {
			var left []string
			for _, c := range f.script[f.next:] {
				left = append(left, strings.Join(c.argv, " "))
			}
			t.Errorf("%d scripted call(s) never made:\n  %s", len(left), strings.Join(left, "\n  "))
		}
	})
	return f
}

func (f *fakeRunner) take(argv []string) call {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t.Helper()
	if f.next >= len(f.script) {
		f.t.Fatalf("unexpected call (script exhausted):\n  %q", argv)
	}
	c := f.script[f.next]
	if !slices.EqualFunc(c.argv, argv, func(want, got string) bool { return want == anyArg || want == got }) {
		f.t.Fatalf("call %d:\n  got  %q\n  want %q", f.next+1, argv, c.argv)
	}
	f.next++
	*f.events = append(*f.events, "run "+strings.Join(argv[1:], " "))
	return c
}

func (f *fakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	c := f.take(append([]string{name}, args...))
	if c.check != nil {
		c.check(append([]string{name}, args...))
	}
	if c.do != nil {
		c.do()
	}
	return []byte(c.stdout), c.err
}

func (f *fakeRunner) Stream(_ context.Context, stdio guest.Stdio, name string, args ...string) (int, error) {
	c := f.take(append([]string{name}, args...))
	if c.do != nil {
		c.do()
	}
	if stdio.Out != nil && c.stdout != "" {
		_, _ = stdio.Out.Write([]byte(c.stdout))
	}
	if c.err != nil {
		return -1, c.err
	}
	return c.code, nil
}

// smolErr is smolvm's way of failing: "Error: MSG" on stderr, exit 1.
func smolErr(msg string, argv ...string) error {
	return &RunError{Argv: argv, ExitCode: 1, Stderr: "Error: " + msg + "\n", Err: &exec.ExitError{}}
}

// fakeImages is an in-memory ImageSource: refs with an ID are local.
type fakeImages struct {
	ids    map[string]string
	events *[]string
}

func (f *fakeImages) ImageID(_ context.Context, ref string) (string, error) {
	*f.events = append(*f.events, "image-id "+ref)
	return f.ids[ref], nil
}

func (f *fakeImages) ListedImageID(ref string) string { return f.ids[ref] }

func (f *fakeImages) Save(_ context.Context, ref, platform, path string) error {
	*f.events = append(*f.events, "save "+ref)
	if platform != "linux/"+runtime.GOARCH {
		return fmt.Errorf("save %s for %q: a machine runs linux/%s", ref, platform, runtime.GOARCH)
	}
	return os.WriteFile(path, []byte("archive of "+ref), 0o644)
}

func (f *fakeImages) Serve(_ context.Context, ref, platform string) (string, func(), error) {
	*f.events = append(*f.events, "serve "+ref)
	if platform != "linux/"+runtime.GOARCH {
		return "", nil, fmt.Errorf("serve %s for %q: a machine runs linux/%s", ref, platform, runtime.GOARCH)
	}
	return "127.0.0.1:5000/" + ref, func() { *f.events = append(*f.events, "stop-serving "+ref) }, nil
}

// packs makes a scripted pack create write what the real one writes.
func packs(t *testing.T, output string) func() {
	return func() {
		for _, p := range []string{output, output + ".smolmachine"} {
			if err := os.WriteFile(p, []byte("pack"), 0o644); err != nil {
				t.Fatalf("fake pack: %v", err)
			}
		}
	}
}

func mustExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("want %s: %v", path, err)
	}
}

func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Errorf("%s should not exist", path)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

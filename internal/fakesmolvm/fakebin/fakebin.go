// Package fakebin builds the fake smolvm executable of the parent
// directory for tests that drive smolvm as a subprocess.
//
// A test puts the directory of the returned path first on PATH and points
// FAKE_SMOLVM_STATE at its own directory:
//
//	bin := fakebin.Build(t)
//	t.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
//	t.Setenv("FAKE_SMOLVM_STATE", t.TempDir())
//
// The environment variables and files the fake understands are documented
// at the top of ../main.go.
package fakebin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once     sync.Once
	binPath  string
	buildErr error
)

// Build builds the fake once per test process, into a fresh directory
// from os.MkdirTemp, and returns the path of the executable, named
// exactly "smolvm". The directory is left for the OS to clean, since
// tests of the process may share the binary until it exits.
func Build(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			buildErr = fmt.Errorf("fakebin: runtime.Caller failed")
			return
		}
		src := filepath.Dir(filepath.Dir(file))
		dir, err := os.MkdirTemp("", "fake-smolvm-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "smolvm")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build fake smolvm in %s: %v\n%s", src, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

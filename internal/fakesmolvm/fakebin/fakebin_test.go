package fakebin

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	bin := Build(t)
	if filepath.Base(bin) != "smolvm" {
		t.Fatalf("Build() = %q, want a file named smolvm", bin)
	}
	if again := Build(t); again != bin {
		t.Fatalf("second Build() = %q, want the same %q", again, bin)
	}
	cmd := exec.Command(bin, "--version")
	cmd.Env = []string{"FAKE_SMOLVM_VERSION=1.9.3"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("smolvm --version: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "smolvm 1.9.3" {
		t.Fatalf("smolvm --version = %q, want %q", got, "smolvm 1.9.3")
	}
}

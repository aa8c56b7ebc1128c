package fakebin

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/providers/smolvm"
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
	// The version first, as smolvm prints it; then the words by which
	// the provider knows the fake (and reports its machines not
	// verifiable).
	first, rest, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if first != "smolvm 1.9.3" || !strings.HasPrefix(rest, smolvm.FakeAnnouncement) {
		t.Fatalf("smolvm --version = %q, want %q, then a line starting %q", out, "smolvm 1.9.3", smolvm.FakeAnnouncement)
	}
}

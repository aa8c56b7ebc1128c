package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// realSmolvm skips unless a real smolvm and a hypervisor it can use are
// here (Linux with a usable /dev/kvm, or macOS).
func realSmolvm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("smolvm"); err != nil {
		t.Skip("no smolvm on PATH: the real-smolvm tests need it (the fake covers the provider)")
	}
	switch runtime.GOOS {
	case "linux":
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			t.Skipf("smolvm is on PATH but KVM is not usable (%v)", err)
		}
		f.Close()
	case "darwin":
	default:
		t.Skipf("smolvm does not run on %s", runtime.GOOS)
	}
}

// TestE2ERealSmolvm applies a smolvm bottle with the real smolvm and
// checks from inside the microVM that it reaches what it should and nothing
// else. The only targets are the bottle's own bundle and loopback.
func TestE2ERealSmolvm(t *testing.T) {
	realSmolvm(t)
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "smolvm.yaml", img)
	t.Cleanup(func() { cli(t, bin, "", "-f", path, "--destroy") })
	if code, out, errs := cli(t, bin, "", "-f", path); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}

	// The self-test runs in the microVM through smolvm's cp and exec, and
	// gives a verdict (a real smolvm is not the tests' fake).
	code, out, errs := cli(t, bin, "", "-f", path, "--verify", "-o", "json")
	var verdict struct {
		Verify []struct {
			OK      bool   `json:"ok"`
			Skipped string `json:"skipped"`
		} `json:"verify"`
	}
	if err := json.Unmarshal([]byte(out), &verdict); err != nil || code != 0 || len(verdict.Verify) != 1 ||
		!verdict.Verify[0].OK || verdict.Verify[0].Skipped != "" {
		t.Fatalf("--verify: exit %d, %v\n%s\n%s", code, err, out, errs)
	}
	// exec round trip.
	if code, out, errs := cli(t, bin, "", "exec", name, "--", "echo", "hello"); code != 0 || out != "hello\n" {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// The agent cannot reach the host's loopback: a server the test starts
	// there is not reachable, and 127.0.0.1 inside the guest refuses.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	code, out, errs = cli(t, bin, "", "exec", name, "--", "sh", "-c", "echo x | nc -w 3 127.0.0.1 "+port+"; echo rc=$?")
	if code != 0 || strings.Contains(out, "rc=0") {
		t.Fatalf("the agent reached 127.0.0.1:%s: exit %d, %q %q", port, code, out, errs)
	}

	// Only the bundle's front ports are meant for the agent: its internal
	// daemon ports are bound to loopback inside the bundle.
	_, out, _ = cli(t, bin, "", "-f", path, "--dry-run", "-o", "json")
	var doc struct {
		Plan struct {
			Steps []struct {
				Resource   string            `json:"resource"`
				Attributes map[string]string `json:"attributes"`
			} `json:"steps"`
		} `json:"plan"`
	}
	_ = json.Unmarshal([]byte(out), &doc)
	bundleIP := ""
	for _, s := range doc.Plan.Steps {
		if strings.HasSuffix(s.Resource, "/bundle") {
			bundleIP = s.Attributes["ip"]
		}
	}
	if bundleIP == "" {
		t.Fatalf("no bundle ip in the plan: %s", out)
	}
	for _, p := range []string{"9000", "9053", "2375"} {
		code, out, errs := cli(t, bin, "", "exec", name, "--", "sh", "-c", "echo x | nc -w 3 "+bundleIP+" "+p+"; echo rc=$?")
		if code != 0 || strings.Contains(out, "rc=0") {
			t.Fatalf("the agent reached the bundle's port %s: exit %d, %q %q", p, code, out, errs)
		}
	}
}

// TestE2ERealSmolvmWorkspace mounts a host directory and a named volume in
// a real microVM: what the agent writes shows on the host, survives a
// replace, and the named volume survives a destroy.
func TestE2ERealSmolvmWorkspace(t *testing.T) {
	realSmolvm(t)
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "smolvm.yaml", img)
	dir := filepath.Dir(path)
	if err := os.Mkdir(filepath.Join(dir, "src"), 0o777); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(greeting string) {
		s := strings.Replace(string(raw), "  agent:\n", "  agent:\n    volumes: [\"./src:/workspace\", \"work:/data\"]\n"+
			"    files: [{path: /etc/greeting, content: "+greeting+"}]\n", 1)
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hello")
	t.Cleanup(func() { cli(t, bin, "", "-f", path, "--destroy", "--volumes") })
	if code, out, errs := cli(t, bin, "", "-f", path, "--no-verify"); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := cli(t, bin, "", "exec", name, "--", "sh", "-c", "echo kept > /workspace/note && echo kept > /data/note && cat /etc/greeting"); code != 0 || out != "hello\n" {
		t.Fatalf("exec: exit %d, %q %q", code, out, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "src", "note")); err != nil || string(b) != "kept\n" {
		t.Fatalf("the host directory: %q, %v", b, err)
	}
	write("bonjour") // files changed: the machine is replaced
	if code, out, errs := cli(t, bin, "", "-f", path, "--no-verify"); code != 0 || !strings.Contains(out, "files changed") {
		t.Fatalf("apply after a file change: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := cli(t, bin, "", "exec", name, "--", "cat", "/data/note", "/workspace/note", "/etc/greeting"); code != 0 || out != "kept\nkept\nbonjour\n" {
		t.Fatalf("after the replace: exit %d, %q %q", code, out, errs)
	}
}

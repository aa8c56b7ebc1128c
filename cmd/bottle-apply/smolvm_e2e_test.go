package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/internal/fakesmolvm/fakebin"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// smolEnv runs the CLI with the fake smolvm first on PATH and its own
// state, cache and record directories.
type smolEnv struct {
	t       *testing.T
	bin     string
	env     []string
	state   string
	cache   string
	path    string // the spec file
	name    string
	image   string
	version string
}

func newSmolEnv(t *testing.T, version string) *smolEnv {
	t.Helper()
	c := testenv.Docker(t)
	fake := fakebin.Build(t)
	e := &smolEnv{t: t, bin: testenv.Binary(t), state: t.TempDir(), cache: t.TempDir(), version: version}
	e.image = testenv.AgentImage(t, c)
	e.name = testenv.Name("smol")
	testenv.CleanupBottle(t, c, e.name)
	e.env = append(os.Environ(),
		"PATH="+filepath.Dir(fake)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FAKE_SMOLVM_STATE="+e.state, "FAKE_SMOLVM_VERSION="+version, "FAKE_SMOLVM_PULL_CHECK=1",
		"XDG_CACHE_HOME="+e.cache, "XDG_STATE_HOME="+filepath.Join(e.cache, "state"))
	e.writeSpec(map[string]string{"GREETING": "hello"})
	return e
}

func (e *smolEnv) writeSpec(env map[string]string) {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: %s\nspec:\n  backend: smolvm\n", e.name)
	fmt.Fprintf(&b, "  agent:\n    image: %s\n    command: [sleep, infinity]\n    cpus: 1\n    memory: 256\n    env:\n", e.image)
	for k, v := range env {
		fmt.Fprintf(&b, "      %s: %s\n", k, v)
	}
	b.WriteString("  network:\n    allowCIDRs: [10.99.0.0/16]\n")
	e.path = filepath.Join(e.cache, "smol.yaml")
	if err := os.WriteFile(e.path, []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// run runs the CLI with extra env and returns exit code, stdout, stderr.
func (e *smolEnv) run(extra []string, args ...string) (int, string, string) {
	e.t.Helper()
	return runCLI(e.t, e.bin, "", append(slices.Clone(e.env), extra...), args...)
}

func (e *smolEnv) mustApply(args ...string) string {
	e.t.Helper()
	code, out, errs := e.run(nil, append([]string{"-f", e.path}, args...)...)
	if code != 0 {
		e.t.Fatalf("apply %q: exit %d\n%s\n%s", args, code, out, errs)
	}
	return out
}

// argv returns the smolvm invocations logged since the last call, each
// joined with spaces, with temp paths shortened.
func (e *smolEnv) argv() []string {
	e.t.Helper()
	p := filepath.Join(e.state, "argv.log")
	raw, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	_ = os.Remove(p)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if line == "" {
			continue
		}
		var args []string
		if err := json.Unmarshal([]byte(line), &args); err != nil {
			e.t.Fatalf("argv.log line %q: %v", line, err)
		}
		s := strings.Join(args, " ")
		s = strings.ReplaceAll(s, e.cache, "$CACHE")
		out = append(out, s)
	}
	return out
}

// machine returns the fake's record of the bottle's machine.
func (e *smolEnv) machine() map[string]any {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(filepath.Dir(fakebin.Build(e.t)), "smolvm"), "machine", "ls", "--json")
	cmd.Env = e.env
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(e.state, "argv.log"))
	var ms []map[string]any
	if err := json.Unmarshal(out, &ms); err != nil {
		e.t.Fatal(err)
	}
	for _, m := range ms {
		if m["name"] == "bottle-"+e.name+"-agent" {
			return m
		}
	}
	return nil
}

func (e *smolEnv) smolvm(args ...string) {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(filepath.Dir(fakebin.Build(e.t)), "smolvm"), args...)
	cmd.Env = e.env
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("smolvm %q: %v\n%s", args, err, out)
	}
	_ = os.Remove(filepath.Join(e.state, "argv.log"))
}

func hasPrefixes(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("smolvm calls:\n  %s\nwant %d calls starting:\n  %s", strings.Join(got, "\n  "), len(want), strings.Join(want, "\n  "))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("smolvm call %d = %q, want it to start with %q\nall calls:\n  %s", i, got[i], want[i], strings.Join(got, "\n  "))
		}
	}
}

func TestE2ESmolvmLifecycle(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"0.8.0", "1.9.3"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			e := newSmolEnv(t, version)
			machine := "bottle-" + e.name + "-agent"

			// Apply from nothing: the image reaches smolvm, then create and
			// start with the bundle's address as the only way out.
			out := e.mustApply()
			if !strings.Contains(out, "+   smolvm-machine:"+e.name+"/agent") || !strings.Contains(out, "Plan: 4 to create") {
				t.Fatalf("plan:\n%s", out)
			}
			// The self-test takes no verdict from the fake, whose guest
			// commands run on the host: it says so instead.
			if want := "Verify " + e.name + ": not verifiable with this smolvm"; !strings.Contains(out, want) {
				t.Fatalf("apply output lacks %q:\n%s", want, out)
			}
			// A parallel test may win a subnet and force another round, so
			// the first apply is checked without its ls calls.
			calls := slices.DeleteFunc(e.argv(), func(c string) bool { return c == "machine ls --json" })
			m := e.machine()
			if m == nil || m["state"] != "running" {
				t.Fatalf("machine after apply: %v", m)
			}
			fake := m["fake"].(map[string]any)
			cidrs := fmt.Sprint(fake["allow_cidrs"])
			if !strings.HasPrefix(cidrs, "[10.213.") || !strings.Contains(cidrs, ".2/32 10.99.0.0/16]") {
				t.Fatalf("allow-cidrs = %s, want the bundle /32 then the spec's", cidrs)
			}
			env := fmt.Sprint(fake["env"])
			if !strings.Contains(env, "GREETING=hello") || !strings.Contains(env, "HTTPS_PROXY=http://10.213.") {
				t.Fatalf("env = %s", env)
			}
			if version == "0.8.0" {
				// No image archives before 1.9: a loopback registry serves
				// the local image to pack create (the fake really pulls it).
				hasPrefixes(t, calls, "--version",
					"pack create -I 127.0.0.1:", "machine create "+machine+" --from $CACHE/bottle-apply/smolvm/packs/",
					"machine start --name "+machine)
			} else {
				hasPrefixes(t, calls, "--version",
					"machine create --name "+machine+" --image $CACHE/bottle-apply/smolvm/images/",
					"machine start --name "+machine)
				if !strings.Contains(calls[1], "--label io.bottle-apply.name="+e.name) || !strings.HasSuffix(calls[1], "-- sleep infinity") {
					t.Fatalf("create = %q, want labels and the command", calls[1])
				}
			}
			for _, want := range []string{"--cpus 1", "--mem 256", "--allow-cidr 10.99.0.0/16"} {
				if !strings.Contains(calls[len(calls)-2], want) {
					t.Fatalf("create = %q lacks %q", calls[len(calls)-2], want)
				}
			}

			// --verify alone: no verdict from the fake, and no failure.
			if code, out, errs := e.run(nil, "-f", e.path, "--verify"); code != 0 ||
				!strings.Contains(out, "Verify "+e.name+": not verifiable with this smolvm (bottle-apply fake smolvm") {
				t.Fatalf("--verify: exit %d\n%s\n%s", code, out, errs)
			}
			e.argv()

			// No-op: smolvm is only asked what exists.
			if out := e.mustApply("--detailed-exitcode"); !strings.HasPrefix(out, "No changes.") {
				t.Fatalf("second apply:\n%s", out)
			}
			hasPrefixes(t, e.argv(), "machine ls --json")

			// exec and cp reach the machine.
			code, stdout, errs := e.run(nil, "exec", e.name, "--", "sh", "-c", "echo $GREETING; exit 4")
			if code != 4 || stdout != "hello\n" {
				t.Fatalf("exec: exit %d, stdout %q, stderr %q", code, stdout, errs)
			}
			src := filepath.Join(t.TempDir(), "in.txt")
			if err := os.WriteFile(src, []byte("payload"), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, _, errs := e.run(nil, "cp", src, e.name+":in.txt"); code != 0 {
				t.Fatalf("cp in: exit %d: %s", code, errs)
			}
			back := filepath.Join(t.TempDir(), "back.txt")
			if code, _, errs := e.run(nil, "cp", e.name+":in.txt", back); code != 0 {
				t.Fatalf("cp out: exit %d: %s", code, errs)
			}
			if b, err := os.ReadFile(back); err != nil || string(b) != "payload" {
				t.Fatalf("round trip: %q %v", b, err)
			}
			e.argv()

			// Stopped by hand: started again.
			e.smolvm("machine", "stop", "--name", machine)
			if out := e.mustApply(); !strings.Contains(out, "~   smolvm-machine:"+e.name+"/agent") {
				t.Fatalf("apply after stop:\n%s", out)
			}
			// The self-test asks smolvm what it is (a new process knows no
			// version yet).
			hasPrefixes(t, e.argv(), "machine ls --json", "machine start --name "+machine, "machine ls --json", "--version")

			// An env change replaces the machine: smolvm cannot change it in place.
			e.writeSpec(map[string]string{"GREETING": "bonjour"})
			if out := e.mustApply(); !strings.Contains(out, "-/+ smolvm-machine:"+e.name+"/agent") || !strings.Contains(out, "env changed") {
				t.Fatalf("apply after env change:\n%s", out)
			}
			del := "machine delete --name " + machine + " -f"
			create := "machine create --name " + machine
			if version == "0.8.0" {
				del, create = "machine delete "+machine+" -f", "machine create "+machine
			}
			hasPrefixes(t, e.argv(), "machine ls --json", "--version", "machine stop --name "+machine, del, create,
				"machine start --name "+machine, "machine ls --json")
			if fmt.Sprint(e.machine()["fake"].(map[string]any)["env"]) == env {
				t.Fatal("the machine's env did not change")
			}

			// Deleted by hand: recreated.
			e.smolvm(append(strings.Fields(del)[:len(strings.Fields(del))-1], "-f")...)
			if out := e.mustApply(); !strings.Contains(out, "+   smolvm-machine:"+e.name+"/agent") {
				t.Fatalf("apply after delete:\n%s", out)
			}
			e.argv()

			// Destroy: stop, delete -f, then the bundle and the networks.
			out = e.mustApply("--destroy")
			if !strings.Contains(out, "4 deleted") {
				t.Fatalf("destroy:\n%s", out)
			}
			hasPrefixes(t, e.argv(), "machine ls --json", "--version", "machine stop --name "+machine, del, "machine ls --json")
			if e.machine() != nil {
				t.Fatal("the machine survived destroy")
			}
		})
	}
}

func TestE2ESmolvmHypervisorError(t *testing.T) {
	t.Parallel()
	e := newSmolEnv(t, "1.9.3")
	code, _, errs := e.run([]string{"FAKE_SMOLVM_HYPERVISOR=kvm-missing"}, "-f", e.path)
	if code != 1 {
		t.Fatalf("apply: exit %d, want 1\n%s", code, errs)
	}
	for _, want := range []string{"bottle-" + e.name + "-agent", "kvm not available", "kvm"} {
		if !strings.Contains(errs, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, errs)
		}
	}
	t.Logf("hypervisor error as the user sees it:\n%s", errs)
	// Once the hypervisor works, the next apply starts the machine.
	e.argv()
	e.mustApply()
	if m := e.machine(); m == nil || m["state"] != "running" {
		t.Fatalf("machine after the hypervisor came back: %v", m)
	}
	e.mustApply("--destroy")
}

func TestE2ESmolvmRefusesUnownedMachine(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"0.8.0", "1.9.3"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			e := newSmolEnv(t, version)
			machine := "bottle-" + e.name + "-agent"
			if version == "0.8.0" {
				e.smolvm("machine", "create", machine)
			} else {
				e.smolvm("machine", "create", "--name", machine)
			}
			code, out, errs := e.run(nil, "-f", e.path)
			if code != 1 || !strings.Contains(errs, `smolvm machine "`+machine+`"`) || !strings.Contains(errs, "not managed by bottle-apply") {
				t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
			}
			calls := e.argv()
			for _, c := range calls {
				if c != "machine ls --json" {
					t.Fatalf("the refused apply ran smolvm %q", c)
				}
			}
			if m := e.machine(); m == nil || m["state"] != "created" {
				t.Fatalf("the unowned machine was touched: %v", m)
			}
		})
	}
}

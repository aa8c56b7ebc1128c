package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// cli runs the built binary and returns its exit code, stdout and stderr.
func cli(t *testing.T, bin, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, bin, stdin, nil, args...)
}

// runCLI is cli with env added to the test's environment (the last value
// of a name wins).
func runCLI(t *testing.T, bin, stdin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	return code, out.String(), errb.String()
}

// example returns a copy of an example spec, renamed to a unique bottle,
// with the test's agent image and an automatic subnet so that it never
// meets a user's own bottle.
func example(t *testing.T, c *client.Client, file, image string) (path, name string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "examples", file))
	if err != nil {
		t.Fatal(err)
	}
	name = testenv.Name("e2e")
	testenv.CleanupBottle(t, c, name)
	s := regexp.MustCompile(`(?m)^  name: .*$`).ReplaceAllString(string(raw), "  name: "+name)
	s = regexp.MustCompile(`(?m)^    image: .*$`).ReplaceAllString(s, "    image: "+image)
	s = regexp.MustCompile(`(?m)^    (subnet|bundleIP|egressSubnet): .*\n`).ReplaceAllString(s, "")
	path = filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, name
}

func containerID(t *testing.T, c *client.Client, name string) string {
	t.Helper()
	cs, err := c.ContainerList(t.Context(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("name", "^/"+name+"$"))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("container %s: %v (%d found)", name, err, len(cs))
	}
	return cs[0].ID
}

func TestE2EHelloExample(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "hello.yaml", img)

	// First apply: the plan, then the result.
	code, out, errs := cli(t, bin, "", "-f", path)
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{
		"+   docker-network:" + name + "/internal",
		"+   docker-container:" + name + "/agent",
		"Plan: 4 to create, 0 to start, 0 to replace, 0 to delete.",
		"Apply complete: 4 created, 0 started, 0 replaced, 0 deleted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "INF") {
		t.Errorf("no progress on stderr:\n%s", errs)
	}
	agentID := containerID(t, c, "bottle-"+name+"-agent")

	// Second apply: no changes, exit 0 even with --detailed-exitcode.
	code, out, _ = cli(t, bin, "", "-f", path, "--detailed-exitcode")
	if code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("second apply: exit %d\n%s", code, out)
	}

	// A dry run of an env change shows the replacement, exits 2, changes
	// nothing.
	raw, _ := os.ReadFile(path)
	changed := strings.Replace(string(raw), "GREETING: hello", "GREETING: bonjour", 1)
	if changed == string(raw) {
		t.Fatal("the example has no GREETING to change")
	}
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = cli(t, bin, "", "-f", path, "--dry-run", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, "-/+ docker-container:"+name+"/agent  env changed") ||
		!strings.Contains(out, "Plan: 0 to create, 0 to start, 1 to replace, 0 to delete.") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if id := containerID(t, c, "bottle-"+name+"-agent"); id != agentID {
		t.Fatal("the dry run replaced the agent")
	}

	// Apply from stdin with JSON output.
	code, out, errs = cli(t, bin, changed, "-f", "-", "--output", "json", "--log-format", "json")
	if code != 0 {
		t.Fatalf("json apply: exit %d\n%s\n%s", code, out, errs)
	}
	var doc struct {
		Command string   `json:"command"`
		Bottles []string `json:"bottles"`
		Changed bool     `json:"changed"`
		Plan    struct {
			Changes map[string]int `json:"changes"`
		} `json:"plan"`
		Steps []struct {
			Action   string `json:"action"`
			Resource string `json:"resource"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if doc.Command != "apply" || !doc.Changed || doc.Plan.Changes["replace"] != 1 || len(doc.Steps) != 2 ||
		len(doc.Bottles) != 1 || doc.Bottles[0] != name {
		t.Fatalf("json result: %+v", doc)
	}
	for _, line := range strings.Split(strings.TrimSpace(errs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("log line is not JSON: %q", line)
		}
	}

	// Destroy, twice.
	code, out, _ = cli(t, bin, "", "-f", path, "--destroy")
	if code != 0 || !strings.Contains(out, "Destroy complete: 0 created, 0 started, 0 replaced, 4 deleted") {
		t.Fatalf("destroy: exit %d\n%s", code, out)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("left after destroy: %q", left)
	}
	code, out, _ = cli(t, bin, "", "-f", path, "--destroy", "--detailed-exitcode")
	if code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("second destroy: exit %d\n%s", code, out)
	}
}

func TestE2EInvalidSpecTouchesNothing(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	name := testenv.Name("e2e")
	testenv.CleanupBottle(t, c, name)
	good := "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: " + name + "\nspec:\n  agent:\n    image: x\n"
	bad := "---\napiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: other\nspec:\n  agent:\n    image: x\n    evn: {A: b}\n"
	dir := t.TempDir()
	path := filepath.Join(dir, "two.yaml")
	if err := os.WriteFile(path, []byte(good+bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, bin, "", "-f", path)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	want := path + `:16:5: spec.agent.evn: unknown field (did you mean "env"?)`
	if !strings.Contains(errs, want) || !strings.Contains(errs, "nothing was changed") {
		t.Fatalf("stderr lacks %q:\n%s", want, errs)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("an invalid spec created %q", left)
	}
}

func TestE2EExecAndCopy(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "hello.yaml", img)
	if code, out, errs := cli(t, bin, "", "-f", path); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	cases := []struct {
		name             string
		stdin            string
		args             []string
		code             int
		stdout, inStderr string
	}{
		{"echo", "", []string{"exec", name, "--", "echo", "hello"}, 0, "hello\n", ""},
		{"exit code and stderr", "", []string{"exec", name, "--", "sh", "-c", "echo oops >&2; exit 3"}, 3, "", "oops"},
		{"stdin", "piped\n", []string{"exec", "-i", name, "--", "cat"}, 0, "piped\n", ""},
		{"env and workdir", "", []string{"exec", "-e", "X=1", "-w", "/tmp", name, "--", "sh", "-c", "echo $X $GREETING; pwd"}, 0, "1 hello\n/tmp\n", ""},
		{"tty", "", []string{"exec", "-t", name, "--", "sh", "-c", "test -t 1 && echo tty"}, 0, "tty\r\n", ""},
		{"unknown bottle", "", []string{"exec", "no-such-bottle-x", "--", "true"}, 1, "", "bottle no-such-bottle-x has no agent"},
		{"no dash", "", []string{"exec", name, "true"}, 1, "", "exec takes the bottle's name, then -- and the command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := cli(t, bin, tc.stdin, tc.args...)
			if code != tc.code || out != tc.stdout || !strings.Contains(errs, tc.inStderr) {
				t.Fatalf("exit %d (want %d), stdout %q (want %q), stderr %q (want it to contain %q)",
					code, tc.code, out, tc.stdout, errs, tc.inStderr)
			}
		})
	}

	// cp a file and a directory in and back out.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("payload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tree", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tree", "sub", "f"), []byte("deep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"cp", filepath.Join(dir, "in.txt"), name + ":/tmp/in.txt"},
		{"cp", filepath.Join(dir, "tree"), name + ":/tmp/tree"},
	} {
		if code, out, errs := cli(t, bin, "", args...); code != 0 {
			t.Fatalf("%q: exit %d\n%s\n%s", args, code, out, errs)
		}
	}
	// Into an existing directory: under the source's name, as docker cp does.
	if code, _, errs := cli(t, bin, "", "cp", filepath.Join(dir, "in.txt"), name+":/workspace"); code != 0 {
		t.Fatalf("cp into a directory: exit %d: %s", code, errs)
	}
	if _, out, _ := cli(t, bin, "", "exec", name, "--", "cat", "/tmp/in.txt", "/tmp/tree/sub/f", "/workspace/in.txt"); out != "payload\ndeep\npayload\n" {
		t.Fatalf("files in the agent: %q", out)
	}
	back := filepath.Join(dir, "back")
	if code, _, errs := cli(t, bin, "", "cp", name+":/tmp/tree", back); code != 0 {
		t.Fatalf("cp out: exit %d: %s", code, errs)
	}
	if code, _, errs := cli(t, bin, "", "cp", name+":/tmp/in.txt", dir+"/out.txt"); code != 0 {
		t.Fatalf("cp out: exit %d: %s", code, errs)
	}
	for p, want := range map[string]string{filepath.Join(back, "sub", "f"): "deep\n", filepath.Join(dir, "out.txt"): "payload\n"} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Fatalf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	if code, _, errs := cli(t, bin, "", "cp", "a", "b"); code != 1 || !strings.Contains(errs, "exactly one side must be NAME:PATH") {
		t.Fatalf("cp without a bottle side: exit %d: %s", code, errs)
	}
}

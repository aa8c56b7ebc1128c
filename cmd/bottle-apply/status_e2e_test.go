package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// statusDoc is what the tests read of status -o json.
type statusDoc struct {
	Bottles []struct {
		Name      string   `json:"name"`
		Backend   string   `json:"backend"`
		State     string   `json:"state"`
		InSync    *bool    `json:"inSync"`
		Sync      string   `json:"sync"`
		Reasons   []string `json:"reasons"`
		Agent     string   `json:"agent"`
		Bundle    string   `json:"bundle"`
		Subnet    string   `json:"subnet"`
		Bundle4   string   `json:"bundleAddress"`
		Resources []struct {
			Role  string `json:"role"`
			Kind  string `json:"kind"`
			State string `json:"state"`
		} `json:"resources"`
	} `json:"bottles"`
}

func parseStatus(t *testing.T, out string) statusDoc {
	t.Helper()
	var d statusDoc
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, out)
	}
	return d
}

// TestE2EStatus: status of bottles in sync, drifted (agent removed by
// hand; env changed in the spec), stopped and missing, in text and JSON,
// with and without specs, through a counting proxy that shows it writes
// nothing and lists each kind once; and completion of their names.
func TestE2EStatus(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	inSync, a := example(t, c, "hello.yaml", img)
	removed, b := example(t, c, "hello.yaml", img)
	stopped, d := example(t, c, "hello.yaml", img)
	envChanged, e := example(t, c, "hello.yaml", img)
	missing, m := example(t, c, "hello.yaml", img)
	files := func(paths ...string) []string {
		var args []string
		for _, p := range paths {
			args = append(args, "-f", p)
		}
		return args
	}
	if code, out, errs := cli(t, bin, "", append(files(inSync, removed, stopped, envChanged), "--no-verify")...); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	if err := c.ContainerRemove(t.Context(), "bottle-"+b+"-agent", container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	one := 1
	for _, role := range []string{"agent", "bundle"} {
		if err := c.ContainerStop(t.Context(), "bottle-"+d+"-"+role, container.StopOptions{Timeout: &one}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(envChanged)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(envChanged, []byte(strings.Replace(string(raw), "GREETING: hello", "GREETING: bonjour", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	all := files(inSync, removed, stopped, envChanged, missing)

	// With specs, through the counting proxy: a text table, exit 2, no
	// write, one list per kind: the calls of the plan of an apply of the
	// same specs (a dry run, first, so that both find the engine known).
	p := testenv.StartProxy(t, "")
	proxied := []string{"DOCKER_HOST=" + p.Host()}
	if code, out, errs := runCLI(t, bin, "", proxied, append([]string{"--dry-run"}, all...)...); code != 0 {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	planCalls := p.Calls()
	p.Reset()
	code, out, errs := runCLI(t, bin, "", proxied, append([]string{"status", "--detailed-exitcode"}, all...)...)
	calls := p.Calls()
	if code != exitChanges {
		t.Fatalf("status -f: exit %d, want %d\n%s\n%s", code, exitChanges, out, errs)
	}
	if w := testenv.Writes(calls); len(w) != 0 {
		t.Errorf("status wrote: %q", w)
	}
	for _, list := range []string{"GET /containers/json", "GET /networks", "GET /volumes"} {
		if n := countPrefix(calls, list); n != 1 {
			t.Errorf("%s: %d calls, want 1 (all: %q)", list, n, calls)
		}
	}
	t.Logf("status -f of 5 bottles: %d calls %q; the dry run's: %d calls %q", len(calls), calls, len(planCalls), planCalls)
	if len(calls) > len(planCalls) {
		t.Errorf("status made %d calls, the dry run %d", len(calls), len(planCalls))
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = line
		}
	}
	for name, want := range map[string][]string{
		a: {"docker", "running", "in sync"},
		b: {"degraded", "missing", "drifted"},
		d: {"stopped", "exited (", "drifted"},
		e: {"running", "drifted"},
		m: {"missing"},
	} {
		for _, w := range want {
			if !strings.Contains(rows[name], w) {
				t.Errorf("row of %s lacks %q: %q\n%s", name, w, rows[name], out)
			}
		}
	}
	if f := strings.Fields(rows[m]); len(f) < 5 || !slices.Equal(f[2:5], []string{"missing", "missing", "missing"}) {
		t.Errorf("row of the missing bottle: %q", rows[m])
	}
	if !strings.Contains(out, "Create docker-container:"+b+"/agent: not found") ||
		!strings.Contains(out, "Replace docker-container:"+e+"/agent: env changed") {
		t.Errorf("the drift reasons are missing:\n%s", out)
	}

	// The same in JSON.
	code, out, errs = cli(t, bin, "", append([]string{"status", "-o", "json"}, all...)...)
	if code != 0 {
		t.Fatalf("status -f -o json: exit %d\n%s", code, errs)
	}
	doc := parseStatus(t, out)
	type want struct {
		state, agent, sync string
		inSync             bool
		reason             string
	}
	wants := map[string]want{
		a: {state: "running", agent: "running", sync: "in sync", inSync: true},
		b: {state: "degraded", agent: "missing", sync: "drifted", reason: "Create docker-container:" + b + "/agent"},
		// The code is the agent's answer to the stop's SIGTERM, or 137.
		d: {state: "stopped", agent: "exited (", sync: "drifted", reason: "Start docker-container:" + d + "/agent"},
		e: {state: "running", agent: "running", sync: "drifted", reason: "Replace docker-container:" + e + "/agent: env changed"},
		m: {state: "missing", agent: "missing", sync: "missing"},
	}
	if len(doc.Bottles) != len(wants) {
		t.Fatalf("%d bottles, want %d:\n%s", len(doc.Bottles), len(wants), out)
	}
	for _, got := range doc.Bottles {
		w := wants[got.Name]
		if got.State != w.state || !strings.HasPrefix(got.Agent, w.agent) || got.Sync != w.sync || got.InSync == nil || *got.InSync != w.inSync ||
			got.Backend != "docker" {
			t.Errorf("%s: %+v, want %+v", got.Name, got, w)
		}
		if w.reason != "" && !slices.ContainsFunc(got.Reasons, func(r string) bool { return strings.HasPrefix(r, w.reason) }) {
			t.Errorf("%s: reasons %q, want one starting %q", got.Name, got.Reasons, w.reason)
		}
		if got.State != "missing" && (len(got.Resources) == 0 || got.Subnet == "" || got.Bundle4 == "") {
			t.Errorf("%s: no resources, subnet or bundle address: %+v", got.Name, got)
		}
	}

	// Without specs: by name, then everything; no inSync.
	code, out, _ = cli(t, bin, "", "status", a, d, m, "-o", "json", "--detailed-exitcode")
	doc = parseStatus(t, out)
	if code != exitChanges || len(doc.Bottles) != 3 || doc.Bottles[0].State != "running" || doc.Bottles[1].State != "stopped" ||
		doc.Bottles[2].State != "missing" || doc.Bottles[0].InSync != nil {
		t.Errorf("status %s %s %s: exit %d\n%s", a, d, m, code, out)
	}
	if code, out, errs := cli(t, bin, "", "status", a, "--detailed-exitcode"); code != 0 || !strings.Contains(out, a) {
		t.Errorf("status %s: exit %d\n%s\n%s", a, code, out, errs)
	}
	code, out, errs = cli(t, bin, "", "status", "-o", "json")
	doc = parseStatus(t, out)
	// smolvm is listed when it is on PATH; its absence is not news.
	if _, err := exec.LookPath("smolvm"); err != nil && strings.Contains(errs, "smolvm") {
		t.Errorf("status without smolvm on PATH warns of it:\n%s", errs)
	}
	var listed []string
	for _, got := range doc.Bottles {
		listed = append(listed, got.Name)
	}
	for _, n := range []string{a, b, d, e} {
		if !slices.Contains(listed, n) {
			t.Errorf("status lists %q, without %s", listed, n)
		}
	}
	if code != 0 || slices.Contains(listed, m) {
		t.Errorf("status: exit %d, lists the bottle never applied: %q", code, listed)
	}
}

// TestE2ECompletion: exec, cp, logs and status complete the names of the
// bottles applied.
func TestE2ECompletion(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "hello.yaml", img)
	if code, out, errs := cli(t, bin, "", "-f", path, "--no-verify"); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	prefix := name[:len(name)-3]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", prefix}, name},
		{[]string{"logs", ""}, name},
		{[]string{"status", prefix}, name},
		{[]string{"cp", "./file", prefix}, name + ":"},
	} {
		code, out, errs := cli(t, bin, "", append([]string{"__complete"}, tc.args...)...)
		lines := strings.Split(out, "\n")
		if code != 0 || !slices.Contains(lines, tc.want) || strings.Contains(errs, "WRN") || strings.Contains(errs, "ERR") {
			t.Errorf("__complete %q: exit %d, want the line %q:\n%s\nstderr: %s", tc.args, code, tc.want, out, errs)
		}
	}
	// A second name for exec is the command: nothing to complete.
	if _, out, _ := cli(t, bin, "", "__complete", "exec", name, ""); strings.Contains(out, name) {
		t.Errorf("exec completes a second name:\n%s", out)
	}
}

func countPrefix(calls []string, prefix string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// TestE2EStatusUnknownSecret: a secret whose source is absent makes the
// bottle's sync unknown, naming the secret, and is no error.
func TestE2EStatusUnknownSecret(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	path, name := example(t, c, "hello.yaml", testenv.AgentImage(t, c))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	absent := "BOTTLE_E2E_ABSENT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	withSecret := strings.Replace(string(raw), "    env:\n", "    secretEnv:\n      API_KEY: {valueFrom: {env: "+absent+"}}\n    env:\n", 1)
	if withSecret == string(raw) {
		t.Fatal("the example has no env to put a secret beside")
	}
	if err := os.WriteFile(path, []byte(withSecret), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, bin, "", "status", "-f", path, "-o", "json")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errs)
	}
	doc := parseStatus(t, out)
	if len(doc.Bottles) != 1 || doc.Bottles[0].Sync != "unknown (secret API_KEY not available)" || *doc.Bottles[0].InSync {
		t.Errorf("status:\n%s", out)
	}
}

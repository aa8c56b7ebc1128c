package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// workspaceSpec is a bottle whose agent runs as 1000:1000 with a bind of
// src, a read-only bind of ro, a named volume at /data and a file written
// on every create.
func workspaceSpec(name, image, greeting string) string {
	return fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s
spec:
  backend: docker
  agent:
    image: %s
    command: ["sleep", "infinity"]
    user: "1000:1000"
    env:
      GREETING: %s
    volumes:
      - ./src:/workspace
      - source: ./ro
        target: /ro
        readOnly: true
      - work:/data
    files:
      - path: /home/agent/.cfg/settings.json
        content: '{"onboarded": true}'
        mode: "0600"
  bundle:
    daemons: []
`, name, image, greeting)
}

// agentSays runs a shell command in the bottle's agent (the test image's
// busybox has its applets only inside its shell) and returns its exit code
// and output.
func agentSays(t *testing.T, bin, name, cmd string) (int, string) {
	t.Helper()
	code, out, errs := cli(t, bin, "", "exec", name, "--", "sh", "-c", cmd)
	return code, strings.TrimSpace(out + errs)
}

func volumeExists(t *testing.T, c *client.Client, name string) bool {
	t.Helper()
	_, err := c.VolumeInspect(t.Context(), name)
	return err == nil
}

// TestE2EWorkspaceSurvives proves a bottle's work lives on: what the agent
// writes to a named volume and a bind survives a replace of the agent, a
// destroy and a new apply, and the named volume goes only with --destroy
// --volumes; files land with their mode and owner before the command runs;
// the agent's user owns what it writes on the host and what cp puts in.
func TestE2EWorkspaceSurvives(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	name := testenv.Name("ws")
	testenv.CleanupBottle(t, c, name)
	dir := t.TempDir()
	for _, d := range []string{"src", "ro"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
		// The agent's user writes there: the test runs as root.
		if err := os.Chmod(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "bottle.yaml")
	write := func(greeting string) {
		if err := os.WriteFile(path, []byte(workspaceSpec(name, img, greeting)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hello")
	volume := "bottle-" + name + "-work"

	code, out, errs := cli(t, bin, "", "-f", path, "--no-verify")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "+   docker-volume:"+name+"/work") {
		t.Errorf("the plan does not create the volume:\n%s", out)
	}
	// The agent runs as its user; the file is in place with its mode and
	// owner, in a directory made for it; the new volume's root is the
	// user's.
	for _, tc := range []struct{ cmd, want string }{
		{"id -u; id -g", "1000\n1000"},
		{"stat -c %a:%u:%g /home/agent/.cfg/settings.json", "600:1000:1000"},
		{"cat /home/agent/.cfg/settings.json", `{"onboarded": true}`},
		{"stat -c %u:%g /home/agent/.cfg", "1000:1000"},
		{"stat -c %u /data", "1000"},
		{"echo kept > /data/note && echo kept > /workspace/note && echo ok", "ok"},
	} {
		if code, got := agentSays(t, bin, name, tc.cmd); code != 0 || got != tc.want {
			t.Errorf("%s: exit %d, %q; want %q", tc.cmd, code, got, tc.want)
		}
	}
	// The host sees the bind's file with the user's uid.
	fi, err := os.Stat(filepath.Join(dir, "src", "note"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("the bind's file is owned by %d:%d on the host, want 1000:1000", st.Uid, st.Gid)
	}
	// A read-only mount refuses writes.
	if code, got := agentSays(t, bin, name, "echo x > /ro/x"); code == 0 || !strings.Contains(got, "Read-only") {
		t.Errorf("a write to the read-only mount: exit %d, %q", code, got)
	}
	// exec -u overrides the user.
	if code, got := agentSays(t, bin, name, "id -u"); code != 0 || got != "1000" {
		t.Errorf("exec: %d %q", code, got)
	}
	if code, out, errs := cli(t, bin, "", "exec", "-u", "0", name, "--", "sh", "-c", "id -u"); code != 0 || strings.TrimSpace(out) != "0" {
		t.Errorf("exec -u 0: exit %d, %q %s", code, out, errs)
	}
	// cp makes the missing parents and gives the user what it writes.
	local := filepath.Join(dir, "repo.txt")
	if err := os.WriteFile(local, []byte("code\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := cli(t, bin, "", "cp", local, name+":/home/agent/new/deep/repo.txt"); code != 0 {
		t.Fatalf("cp: exit %d\n%s\n%s", code, out, errs)
	}
	if code, got := agentSays(t, bin, name, "stat -c %u:%g /home/agent/new/deep/repo.txt /home/agent/new/deep /home/agent/new"); code != 0 || got != "1000:1000\n1000:1000\n1000:1000" {
		t.Errorf("cp'd file and parents: exit %d, %q", code, got)
	}

	// An env change replaces the agent; the plan says what persists, and
	// it does.
	write("bonjour")
	code, out, errs = cli(t, bin, "", "-f", path, "--no-verify")
	if code != 0 {
		t.Fatalf("apply after an env change: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"-/+ docker-container:" + name + "/agent", "keeps:", "/workspace", "/data", "discards:"} {
		if !strings.Contains(out, want) {
			t.Errorf("the replace's plan lacks %q:\n%s", want, out)
		}
	}
	if code, got := agentSays(t, bin, name, "cat /data/note /workspace/note /home/agent/.cfg/settings.json"); code != 0 || got != "kept\nkept\n"+`{"onboarded": true}` {
		t.Errorf("after the replace: exit %d, %q", code, got)
	}
	if code, _ := agentSays(t, bin, name, "test -e /home/agent/new/deep/repo.txt"); code == 0 {
		t.Error("a file cp'd outside the volumes survived the replace")
	}

	// A destroy keeps the named volume and says how to remove it.
	code, out, errs = cli(t, bin, "", "-f", path, "--destroy")
	if code != 0 {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "Kept 1 named volume") || !strings.Contains(out, "docker volume rm "+volume) || !strings.Contains(out, "--destroy --volumes") {
		t.Errorf("destroy does not say it kept the volume:\n%s", out)
	}
	if !volumeExists(t, c, volume) {
		t.Fatal("destroy removed the named volume")
	}
	// A new apply finds the work again.
	if code, out, errs := cli(t, bin, "", "-f", path, "--no-verify"); code != 0 {
		t.Fatalf("apply after destroy: exit %d\n%s\n%s", code, out, errs)
	}
	if code, got := agentSays(t, bin, name, "cat /data/note /workspace/note"); code != 0 || got != "kept\nkept" {
		t.Errorf("after destroy and apply: exit %d, %q", code, got)
	}
	// --destroy --volumes removes it; the host directory stays.
	if code, out, errs := cli(t, bin, "", "-f", path, "--destroy", "--volumes"); code != 0 {
		t.Fatalf("destroy --volumes: exit %d\n%s\n%s", code, out, errs)
	}
	if volumeExists(t, c, volume) {
		t.Error("destroy --volumes left the named volume")
	}
	if _, err := os.Stat(filepath.Join(dir, "src", "note")); err != nil {
		t.Errorf("the host directory's file: %v", err)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Errorf("left after destroy --volumes: %q", left)
	}
}

// crashSpec is a bottle whose agent runs cmd.
func crashSpec(t *testing.T, path, name, image, cmd string) {
	t.Helper()
	spec := fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s
spec:
  agent:
    image: %s
    command: ["sh", "-c", %q]
  bundle:
    daemons: []
`, name, image, cmd)
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestE2ECrashingAgentFailsTheApply: an agent whose command exits fails the
// apply with its exit code and its output, instead of looking converged;
// whether the engine tells it during the readiness wait or the rounds
// keep starting it again.
func TestE2ECrashingAgentFailsTheApply(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	name := testenv.Name("crash")
	testenv.CleanupBottle(t, c, name)
	path := filepath.Join(t.TempDir(), "bottle.yaml")

	crashSpec(t, path, name, img, "echo first line; echo no such tool >&2; exit 3")
	code, out, errs := cli(t, bin, "", "-f", path, "--no-verify")
	if code != 1 {
		t.Fatalf("apply of a crashing agent: exit %d, want 1\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"the agent of bottle " + name + " exited with code 3", "no such tool", "first line", "fix spec.agent.command"} {
		if !strings.Contains(errs, want) {
			t.Errorf("the error lacks %q:\n%s", want, errs)
		}
	}
	if code, out, errs := cli(t, bin, "", "-f", path, "--destroy"); code != 0 {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}

	// An agent that ends after 8 s: --ready-wait 0 does not wait for it,
	// a wait of 30 s sees it end.
	crashSpec(t, path, name, img, "sleep 8; echo giving up; exit 4")
	if code, out, errs := cli(t, bin, "", "-f", path, "--no-verify", "--ready-wait", "0"); code != 0 {
		t.Errorf("apply with --ready-wait 0: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := cli(t, bin, "", "-f", path, "--destroy"); code != 0 {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = cli(t, bin, "", "-f", path, "--no-verify", "--ready-wait", "30s")
	if code != 1 || !strings.Contains(errs, "exited with code 4") || !strings.Contains(errs, "giving up") {
		t.Errorf("apply with --ready-wait 30s: exit %d, want 1 naming code 4 and the output\n%s\n%s", code, out, errs)
	}
}

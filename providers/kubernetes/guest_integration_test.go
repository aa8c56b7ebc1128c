package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/internal/tarcopy/tartest"
)

// testImage is on the test cluster's node already (hack/k8s loads it).
const testImage = "k8s.local/busybox:1.35"

// kubeTestCluster connects to the test cluster that hack/k8s runs
// (BOTTLE_APPLY_TEST_KUBECONFIG); without one the test is skipped, unless
// BOTTLE_APPLY_TEST_KUBERNETES=1 says it should be there.
func kubeTestCluster(t *testing.T) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("talks to a Kubernetes cluster: skipped under -short")
	}
	kc := os.Getenv("BOTTLE_APPLY_TEST_KUBECONFIG")
	if kc == "" {
		if os.Getenv("BOTTLE_APPLY_TEST_KUBERNETES") == "1" {
			t.Fatal("BOTTLE_APPLY_TEST_KUBERNETES=1 but BOTTLE_APPLY_TEST_KUBECONFIG is not set")
		}
		t.Skip("BOTTLE_APPLY_TEST_KUBECONFIG is not set (no test cluster; see hack/k8s)")
	}
	c, err := Connect(kc, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testNamespace creates a namespace of the test's own, deleted when the
// test ends, whatever its outcome.
func testNamespace(t *testing.T, c *Cluster) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "bottle-apply-test-" + randomSuffix(t),
		Labels: map[string]string{"io.bottle-apply.test": strings.ToLower(t.Name())},
	}}
	if _, err := c.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// TestKubeGuest runs a bottle's pod look-alike (an "agent" container as
// root, a "bundle" one as 1000:1000, both busybox) and drives it through
// the guest: exec, cp both ways, logs.
func TestKubeGuest(t *testing.T) {
	c := kubeTestCluster(t)
	ns := testNamespace(t, c)
	name := "kt" + randomSuffix(t)
	id := func(n int64) *int64 { return &n }
	zero := int64(0)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: bottle.ResourceName(name, bottle.RoleAgent) + "-0", Namespace: ns,
			Labels: map[string]string{bottle.LabelName: name, bottle.LabelRole: bottle.RoleAgent},
		},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{
				{
					Name: bottle.RoleAgent, Image: testImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"sh", "-c", "echo hello-from-agent; echo to-stderr >&2; exec sleep 3600"},
				},
				{
					Name: bottle.RoleBundle, Image: testImage, ImagePullPolicy: corev1.PullNever,
					Command:         []string{"sleep", "3600"},
					SecurityContext: &corev1.SecurityContext{RunAsUser: id(1000), RunAsGroup: id(1000)},
				},
			},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An impostor: our name in another namespace, without our labels.
	ns2 := testNamespace(t, c)
	imp := p.DeepCopy()
	imp.Namespace, imp.Labels, imp.ResourceVersion = ns2, nil, ""
	if _, err := c.Client.CoreV1().Pods(ns2).Create(t.Context(), imp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var pod *corev1.Pod
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var err error
		pod, err = c.FindPod(t.Context(), ns, name, bottle.RoleAgent)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod did not run: %v", err)
		}
		time.Sleep(time.Second)
	}
	if all, err := c.FindPod(t.Context(), "", name, bottle.RoleAgent); err != nil || all.Namespace != ns {
		t.Fatalf("all namespaces: %v, %v", all, err)
	}
	if _, err := c.FindPod(t.Context(), ns2, name, bottle.RoleAgent); !errors.Is(err, ErrNoBottle) {
		t.Fatalf("the impostor's namespace: err = %v, want ErrNoBottle", err)
	}
	if _, err := c.FindPod(t.Context(), "", "no-such-"+name, bottle.RoleAgent); !errors.Is(err, ErrNoBottle) || !strings.Contains(err.Error(), "has no agent pod on the cluster") {
		t.Fatalf("no such bottle: err = %v", err)
	}

	agent := c.Guest(pod, bottle.RoleAgent, "", "")
	if got, want := agent.String(), "the agent of bottle "+name; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	bundle := c.Guest(pod, bottle.RoleBundle, "1000:1000", "the bundle of bottle "+name)

	t.Run("exec", func(t *testing.T) { testKubeExec(t, agent, bundle) })
	t.Run("cp", func(t *testing.T) { testKubeCopy(t, c, pod, agent, bundle) })
	t.Run("logs", func(t *testing.T) { testKubeLogs(t, c, pod, agent) })
	t.Run("hostile tar", func(t *testing.T) { testKubeHostileTar(t, agent) })
}

// run execs a command and returns its stdout, stderr and exit code.
func run(t *testing.T, g guest.Guest, o guest.ExecOptions, in string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	stdio := guest.Stdio{Out: &out, Err: &errb}
	if in != "" {
		stdio.In = strings.NewReader(in)
	}
	code, err := g.Exec(t.Context(), o, stdio)
	if err != nil {
		t.Fatalf("exec %q: %v", o.Cmd, err)
	}
	return out.String(), errb.String(), code
}

// sh runs a shell command in g and fails the test unless it exits 0.
func sh(t *testing.T, g guest.Guest, script string) string {
	t.Helper()
	out, errs, code := run(t, g, guest.ExecOptions{Cmd: []string{"sh", "-c", script}}, "")
	if code != 0 {
		t.Fatalf("sh -c %q: exit code %d: %s", script, code, errs)
	}
	return out
}

func testKubeExec(t *testing.T, agent, bundle guest.Guest) {
	out, errs, code := run(t, agent, guest.ExecOptions{Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, "")
	if out != "out\n" || errs != "err\n" || code != 3 {
		t.Errorf("exit 3: %q %q %d", out, errs, code)
	}
	if _, _, code := run(t, agent, guest.ExecOptions{Cmd: []string{"true"}}, ""); code != 0 {
		t.Errorf("true: exit code %d", code)
	}
	// A command that is not there: 127 and the runtime's word, as docker.
	out, errs, code = run(t, agent, guest.ExecOptions{Cmd: []string{"no-such-command"}}, "")
	if code != 127 || !strings.Contains(errs, "executable file not found") {
		t.Errorf("no-such-command: exit code %d, stderr %q", code, errs)
	}
	if _, errs, code := run(t, agent, guest.ExecOptions{Cmd: []string{"/etc/passwd"}}, ""); code != 126 {
		t.Errorf("a file that is no program: exit code %d, stderr %q", code, errs)
	}

	sh(t, agent, `mkdir -p "/tmp/w d/-x"`)
	out, _, code = run(t, agent, guest.ExecOptions{
		Cmd: []string{"sh", "-c", `printf '%s|%s|%s' "$A" "$B" "$PWD"`},
		Env: []string{"A=x y", "B=$(nope) 'q'"}, Workdir: "/tmp/w d/-x",
	}, "")
	if want := "x y|$(nope) 'q'|/tmp/w d/-x"; out != want || code != 0 {
		t.Errorf("env and workdir: %q (exit code %d), want %q", out, code, want)
	}
	if _, errs, code := run(t, agent, guest.ExecOptions{Cmd: []string{"true"}, Workdir: "/no/such/dir"}, ""); code != 126 {
		t.Errorf("missing workdir: exit code %d (%s), want 126", code, errs)
	}

	out, _, code = run(t, agent, guest.ExecOptions{Cmd: []string{"cat"}, Interactive: true}, "piped\nlines\n")
	if out != "piped\nlines\n" || code != 0 {
		t.Errorf("stdin: %q, exit code %d", out, code)
	}
	// Without Interactive, stdin is not passed.
	out, _, _ = run(t, agent, guest.ExecOptions{Cmd: []string{"cat"}}, "ignored\n")
	if out != "" {
		t.Errorf("stdin without Interactive: %q", out)
	}

	// A terminal, as exec -it: stdin stays open while the command runs.
	pr, pw := io.Pipe()
	defer pw.Close()
	var tty bytes.Buffer
	code, err := agent.Exec(t.Context(), guest.ExecOptions{
		// The size comes on its own stream, maybe after the start: wait.
		Cmd: []string{"sh", "-c", `for i in $(seq 25); do s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 0.2; done
echo "$s"; test -t 0 && test -t 1 && echo tty; exit 5`},
		TTY: true, Interactive: true, Height: 33, Width: 101,
	}, guest.Stdio{In: pr, Out: &tty})
	if got := strings.ReplaceAll(tty.String(), "\r", ""); err != nil || got != "33 101\ntty\n" || code != 5 {
		t.Errorf("tty: %q, exit code %d, %v", got, code, err)
	}

	// The user: the bundle runs as 1000:1000 and an exec can be nothing
	// else; the agent sets no runAsUser, so no user can be checked.
	out, _, _ = run(t, bundle, guest.ExecOptions{Cmd: []string{"id", "-u"}, User: "1000"}, "")
	if out != "1000\n" {
		t.Errorf("id -u as 1000: %q", out)
	}
	for _, tc := range []struct {
		g    guest.Guest
		user string
	}{{bundle, "0"}, {bundle, "1000:0"}, {agent, "0"}} {
		_, err := tc.g.Exec(t.Context(), guest.ExecOptions{Cmd: []string{"id"}, User: tc.user}, guest.Stdio{})
		if err == nil || !strings.Contains(err.Error(), "cannot switch users") {
			t.Errorf("%s as %s: err = %v", tc.g, tc.user, err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := agent.Exec(ctx, guest.ExecOptions{Cmd: []string{"sleep", "60"}}, guest.Stdio{}); err == nil {
		t.Error("sleep past the deadline: no error")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("an exec past its deadline returned after %v", d)
	}
}

func testKubeCopy(t *testing.T, c *Cluster, pod *corev1.Pod, agent, bundle guest.Guest) {
	host := t.TempDir()
	file := filepath.Join(host, "f.txt")
	tartest.WriteFile(t, file, "F\n")
	tree := filepath.Join(host, "tree")
	tartest.Mkdir(t, filepath.Join(tree, "sub"))
	tartest.WriteFile(t, filepath.Join(tree, "a"), "A")
	tartest.WriteFile(t, filepath.Join(tree, "sub", "b"), "B")
	if err := os.Symlink("sub/b", filepath.Join(tree, "l")); err != nil {
		t.Fatal(err)
	}

	sh(t, agent, "mkdir -p /tmp/in")
	ctx := t.Context()
	for _, cp := range []struct{ src, dst string }{
		{file, "/tmp/in"},                     // into an existing directory
		{file, "/tmp/in/renamed.txt"},         // to a new name
		{tree, "/tmp/in"},                     // a directory into one
		{tree, "/tmp/new/parents/tree2"},      // to a new name, parents made
		{tree + "/.", "/tmp/contents"},        // a directory's contents
		{file, "/tmp/in/tree/sub/b"},          // over an existing file
		{filepath.Join(tree, "sub"), "/tmp/"}, // a trailing slash
	} {
		if err := agent.CopyIn(ctx, cp.src, cp.dst); err != nil {
			t.Fatalf("CopyIn %s %s: %v", cp.src, cp.dst, err)
		}
	}
	got := sh(t, agent, `cd /tmp && for f in in/f.txt in/renamed.txt in/tree/a in/tree/sub/b new/parents/tree2/a new/parents/tree2/sub/b contents/a contents/sub/b sub/b; do printf '%s=%s;' "$f" "$(cat "$f")"; done; readlink in/tree/l`)
	want := "in/f.txt=F;in/renamed.txt=F;in/tree/a=A;in/tree/sub/b=F;new/parents/tree2/a=A;new/parents/tree2/sub/b=B;contents/a=A;contents/sub/b=B;sub/b=B;sub/b\n"
	if got != want {
		t.Errorf("CopyIn:\n got %q\nwant %q", got, want)
	}

	// Owners: the bottle's user owns what is written, missing parents too.
	owned := c.Guest(pod, bottle.RoleAgent, "1234:2345", "")
	if err := owned.CopyIn(ctx, tree, "/tmp/owned/p/tree"); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, agent, "stat -c %u:%g /tmp/owned/p /tmp/owned/p/tree /tmp/owned/p/tree/sub/b"); got != "1234:2345\n1234:2345\n1234:2345\n" {
		t.Errorf("owners as root with a bottle user: %q", got)
	}
	if err := bundle.CopyIn(ctx, tree, "/tmp/as-bundle"); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, bundle, "stat -c %u:%g /tmp/as-bundle /tmp/as-bundle/sub/b"); got != "1000:1000\n1000:1000\n" {
		t.Errorf("owners as 1000: %q", got)
	}
	if err := bundle.CopyIn(ctx, file, "/etc/not-writable"); err == nil || !strings.Contains(err.Error(), "/etc/not-writable") || !strings.Contains(err.Error(), bundle.String()) {
		t.Errorf("CopyIn where it may not write: %v", err)
	}
	if err := agent.CopyIn(ctx, filepath.Join(host, "nope"), "/tmp"); err == nil {
		t.Error("CopyIn of a missing file: no error")
	}

	out := t.TempDir()
	tartest.Mkdir(t, filepath.Join(out, "existing"))
	for _, cp := range []struct{ src, dst string }{
		{"/tmp/in/f.txt", "existing"},       // into an existing directory
		{"/tmp/in/f.txt", "renamed.txt"},    // to a new name
		{"/tmp/in/tree", "existing"},        // a directory into one
		{"/tmp/new/parents/tree2", "tree3"}, // to a new name
		{"/tmp/contents/.", "contents"},     // contents
	} {
		if err := agent.CopyOut(ctx, cp.src, filepath.Join(out, cp.dst)); err != nil {
			t.Fatalf("CopyOut %s %s: %v", cp.src, cp.dst, err)
		}
	}
	for rel, want := range map[string]string{
		"existing/f.txt": "F\n", "renamed.txt": "F\n", "existing/tree/a": "A", "existing/tree/sub/b": "F\n",
		"tree3/a": "A", "tree3/sub/b": "B", "contents/a": "A", "contents/sub/b": "B",
	} {
		if b, err := os.ReadFile(filepath.Join(out, rel)); err != nil || string(b) != want {
			t.Errorf("CopyOut %s: %q, %v; want %q", rel, b, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(out, "existing", "tree", "l")); err != nil || l != "sub/b" {
		t.Errorf("CopyOut of a link: %q, %v", l, err)
	}
	err := agent.CopyOut(ctx, "/no/such/file", filepath.Join(out, "x"))
	if err == nil || !strings.Contains(err.Error(), "/no/such/file") || !strings.Contains(err.Error(), agent.String()) {
		t.Errorf("CopyOut of a missing file: %v", err)
	}
}

func testKubeLogs(t *testing.T, c *Cluster, pod *corev1.Pod, agent guest.Guest) {
	rc, err := c.Logs(t.Context(), pod, bottle.RoleAgent, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := readAllClose(rc)
	if err != nil || !strings.Contains(string(b), "hello-from-agent\n") || !strings.Contains(string(b), "to-stderr\n") {
		t.Errorf("logs: %q, %v", b, err)
	}
	rc, err = c.Logs(t.Context(), pod, bottle.RoleAgent, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := readAllClose(rc); err != nil || strings.Count(string(b), "\n") != 1 {
		t.Errorf("tail 1: %q, %v", b, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rc, err = c.Logs(ctx, pod, bottle.RoleAgent, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(rc)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	sh(t, agent, "echo written-later > /proc/1/fd/1")
	for l := range lines {
		if l == "written-later" {
			return
		}
	}
	t.Errorf("follow: never saw the line written later (%v)", ctx.Err())
}

func readAllClose(rc interface {
	Read([]byte) (int, error)
	Close() error
}) ([]byte, error) {
	defer rc.Close()
	var buf bytes.Buffer
	_, err := buf.ReadFrom(rc)
	return buf.Bytes(), err
}

// testKubeHostileTar makes the agent hostile: its tar writes a crafted
// stream whatever it is asked, one that climbs out of the destination,
// then one that plants a link and writes through it. CopyOut must refuse
// both and leave the files beside the destination alone.
func testKubeHostileTar(t *testing.T, agent guest.Guest) {
	host := t.TempDir()
	victim := filepath.Join(host, "victim")
	tartest.WriteFile(t, victim, "safe")
	victimDir := filepath.Join(host, "victim-dir")
	tartest.Mkdir(t, victimDir)
	escape := tartest.Of(t, tartest.Entry{Name: "out/", Dir: true}, tartest.Entry{Name: "out/../victim", Body: "evil"})
	through := tartest.Of(t, tartest.Entry{Name: "out/", Dir: true}, tartest.Entry{Name: "out/d/", Dir: true},
		tartest.Entry{Name: "out/l", Link: "d"}, tartest.Entry{Name: "out/l/x", Body: "evil"})
	abs := tartest.Of(t, tartest.Entry{Name: "out/", Dir: true}, tartest.Entry{Name: "out/l", Link: victimDir}, tartest.Entry{Name: "out/l/x", Body: "evil"})
	for name, b := range map[string][]byte{"escape.tar": escape.Bytes(), "through.tar": through.Bytes(), "abs.tar": abs.Bytes()} {
		p := filepath.Join(host, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := agent.CopyIn(t.Context(), p, "/"+name); err != nil {
			t.Fatal(err)
		}
	}
	// Its own tar first on PATH, from now on.
	sh(t, agent, `rm /bin/tar && printf '#!/bin/sh\ncat "/$(cat /which).tar"\n' > /bin/tar && chmod +x /bin/tar`)
	for _, tc := range []struct{ tar, want string }{
		{"escape", "outside the destination"},
		{"through", "is a symbolic link"},
		{"abs", ""}, // the link is skipped; out/l/x lands in a directory of the copy
	} {
		sh(t, agent, "echo "+tc.tar+" > /which")
		dst := filepath.Join(host, "dst-"+tc.tar)
		err := agent.CopyOut(t.Context(), "/anything/out", dst)
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err = %v, want %q", tc.tar, err, tc.want)
		}
		if tc.want == "" && err != nil {
			t.Errorf("%s: %v", tc.tar, err)
		}
		if b, err := os.ReadFile(victim); err != nil || string(b) != "safe" {
			t.Errorf("%s: the victim is %q, %v", tc.tar, b, err)
		}
		if es, _ := os.ReadDir(victimDir); len(es) != 0 {
			t.Errorf("%s: written into the victim directory: %v", tc.tar, es)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// kubeSpec is a bottle on the test cluster: a sleeping agent as
// 1000:1000 with a named volume at /workspace and two files (one in the
// volume, one outside), the built-in bundle's egress daemon.
func kubeSpec(name, agentImage, bundleImage, greeting string) string {
	return kubeBottleSpec(name, agentImage, bundleImage, `    user: "1000:1000"
    workdir: /workspace
    env:
      GREETING: `+greeting+`
    volumes:
      - work:/workspace
    files:
      - path: /workspace/.seed
        content: "seeded\n"
        mode: "0600"
      - path: /etc/agent.conf
        content: "x=1\n"
`, "")
}

// kubeBottleSpec is a bottle on the test cluster: a sleeping agent with
// the agent's lines given, the network's section given, and the bundle's
// egress and dns daemons.
func kubeBottleSpec(name, agentImage, bundleImage, agent, network string) string {
	return fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s
spec:
  backend: kubernetes
  agent:
    image: %s
    command: ["sleep", "infinity"]
%s%s  bundle:
    image: %s
    daemons: [egress, dns]
    egress:
      allow: [api.example.com]
`, name, agentImage, agent, network, bundleImage)
}

var kubeBundleOnce struct {
	sync.Once
	ref string
	err error
}

// kubeBundleImage is the built-in bundle image, made in the docker engine
// from this machine's bottle-bundle build and loaded into the cluster,
// once per test process: the bottles name it with pull policy
// IfNotPresent, so the cluster needs no registry for it.
func kubeBundleImage(t *testing.T, c *client.Client, k testenv.KubeEnv) string {
	t.Helper()
	kubeBundleOnce.Do(func() {
		bin := testenv.BundleBinary(t, runtime.GOARCH)
		id, err := bundleimage.Ref([]string{bin})
		if err != nil {
			kubeBundleOnce.err = err
			return
		}
		ref := "bottle-apply-test/kube-bundle:" + strings.TrimPrefix(id, bundleimage.Repo+":")
		if _, err := c.ImageInspect(context.Background(), ref); err != nil {
			pr, pw := io.Pipe()
			go func() { werr := bundleimage.WriteRootfs(pw, bin); pw.CloseWithError(werr) }()
			rc, err := c.ImageImport(context.Background(), image.ImportSource{Source: pr, SourceName: "-"}, ref,
				image.ImportOptions{Changes: []string{`ENTRYPOINT ["` + bundleimage.BinaryPath + `"]`}})
			if err != nil {
				kubeBundleOnce.err = err
				return
			}
			_, _ = io.Copy(io.Discard, rc)
			rc.Close()
		}
		kubeBundleOnce.ref = ref
	})
	if kubeBundleOnce.err != nil {
		t.Fatalf("the bundle image for the cluster: %v", kubeBundleOnce.err)
	}
	k.LoadImage(t, kubeBundleOnce.ref)
	return kubeBundleOnce.ref
}

// kubeImages is what every test on the cluster starts with: the cluster,
// bottle-apply, and the agent and bundle images loaded into the cluster.
func kubeImages(t *testing.T) (k testenv.KubeEnv, bin, agent, bundle string) {
	t.Helper()
	k = testenv.Kube(t)
	c := testenv.Docker(t)
	bin = testenv.Binary(t)
	agent = testenv.AgentImage(t, c)
	k.LoadImage(t, agent)
	return k, bin, agent, kubeBundleImage(t, c, k)
}

// kubeBottle writes a spec for a new bottle on the cluster and makes the
// static volume its claim binds (the test cluster has no provisioner);
// everything is removed when the test ends, whatever happened.
type kubeBottle struct {
	name, spec string
	k          testenv.KubeEnv
	env        []string
}

func newKubeBottle(t *testing.T, k testenv.KubeEnv, agentImage, bundleImage string) *kubeBottle {
	t.Helper()
	name := testenv.Name("k")
	kb := &kubeBottle{name: name, k: k, spec: filepath.Join(t.TempDir(), "bottle.yaml"), env: []string{"KUBECONFIG=" + k.Kubeconfig}}
	kb.write(t, kubeSpec(name, agentImage, bundleImage, "hello"))
	dir := filepath.Join(os.TempDir(), "bottle-apply-test-pv", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ns := bottle.NamePrefix + name
	pv := fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-%s, labels: {test: bottle-apply}}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: %s, name: %s}
  hostPath: {path: %s, type: Directory}
`, name, ns, bottle.VolumeName(name, "work"), dir)
	k.Kubectl(t, pv, "apply", "-f", "-")
	t.Cleanup(func() {
		// The test's context is done by now: the cleanup has its own.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, testenv.Binary(t), "-f", kb.spec, "--destroy", "--volumes", "--no-verify")
		cmd.Env = append(os.Environ(), kb.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("cleanup: destroy: %v\n%s", err, out)
		}
		_, _ = k.TryKubectl("", "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
		_, _ = k.TryKubectl("", "delete", "pv", "pv-"+name, "--ignore-not-found")
		_ = os.RemoveAll(dir)
	})
	return kb
}

func (kb *kubeBottle) write(t *testing.T, spec string) {
	t.Helper()
	if err := os.WriteFile(kb.spec, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

// apply runs bottle-apply on the bottle's spec with args, through env
// (the kubeconfig to use), and fails the test on an exit code other than
// want.
func (kb *kubeBottle) apply(t *testing.T, bin string, env []string, want int, args ...string) (string, string) {
	t.Helper()
	code, out, errs := runCLI(t, bin, "", env, append([]string{"-f", kb.spec}, args...)...)
	if code != want {
		t.Fatalf("bottle-apply -f %s %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", kb.spec, args, code, want, out, errs)
	}
	return out, errs
}

// podUID is the UID of the bottle's pod of a role.
func (kb *kubeBottle) podUID(t *testing.T, role string) string {
	t.Helper()
	return strings.TrimSpace(kb.k.Kubectl(t, "", "get", "pods", "-A", "-l", bottle.LabelName+"="+kb.name+","+bottle.LabelRole+"="+role,
		"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.uid}"))
}

// labelled lists every object of the bottle that carries its label.
func (kb *kubeBottle) labelled(t *testing.T) string {
	t.Helper()
	out := kb.k.Kubectl(t, "", "get", "namespaces,pvc,secrets,services,networkpolicies,deployments,statefulsets,pods", "-A",
		"-l", bottle.LabelName+"="+kb.name, "-o", "name")
	return strings.TrimSpace(out)
}

// TestKubeE2ELifecycle: a bottle on the real cluster from nothing to
// nothing. A no-op apply makes no write, and its calls are one list per
// kind; exec, cp and files work through the API; objects deleted by hand
// come back; an env change replaces the agent's pod alone and the work
// on its volume survives; destroy keeps the volume (and its namespace)
// until --volumes.
func TestKubeE2ELifecycle(t *testing.T) {
	k, bin, agent, bundle := kubeImages(t)
	kb := newKubeBottle(t, k, agent, bundle)
	proxy := testenv.StartKubeProxy(t, k.Kubeconfig)
	env := []string{"KUBECONFIG=" + proxy.Kubeconfig}
	ns := bottle.NamePrefix + kb.name

	out, errs := kb.apply(t, bin, env, 0)
	t.Logf("first apply:\n%s%s", out, errs)
	for _, want := range []string{"kubernetes-statefulset:" + kb.name + "/agent", "kubernetes-networkpolicy:" + kb.name + "/agent"} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan does not name %s:\n%s", want, out)
		}
	}

	// A no-op apply: no write, and its calls do not name the bottle.
	proxy.Take()
	start := time.Now()
	out, _ = kb.apply(t, bin, env, 0, "--detailed-exitcode")
	calls := proxy.Take()
	t.Logf("no-op apply: %d calls in %s: %v", len(calls), time.Since(start), calls)
	if w := testenv.KubeWrites(calls); len(w) > 0 {
		t.Errorf("a no-op apply wrote: %v", w)
	}
	lists := 0
	for _, call := range calls {
		if strings.Contains(call, "labelSelector=io.bottle-apply.name") {
			lists++
		}
		if strings.Contains(call, "/namespaces/"+ns+"/") {
			t.Errorf("a no-op apply asked about the bottle alone: %s", call)
		}
	}
	if lists != 8 {
		t.Errorf("a no-op apply made %d label-selected lists, want 8 (7 kinds and the pods): %v", lists, calls)
	}

	// status: with the spec, running and in sync, writing nothing, with
	// no more calls than the no-op apply; without it, the cluster is
	// asked when --kubeconfig names it, and lists the bottle.
	code, o, e := runCLI(t, bin, "", env, "status", "-f", kb.spec, "-o", "json", "--detailed-exitcode")
	statusCalls := proxy.Take()
	if w := testenv.KubeWrites(statusCalls); len(w) > 0 {
		t.Errorf("status wrote: %v", w)
	}
	if len(statusCalls) > len(calls) {
		t.Errorf("status -f made %d calls, the no-op apply %d: %v", len(statusCalls), len(calls), statusCalls)
	}
	doc := parseStatus(t, o)
	if code != 0 || len(doc.Bottles) != 1 || doc.Bottles[0].Backend != "kubernetes" || doc.Bottles[0].State != "running" ||
		doc.Bottles[0].InSync == nil || !*doc.Bottles[0].InSync {
		t.Errorf("status -f: exit %d\n%s\n%s", code, o, e)
	}
	code, o, e = runCLI(t, bin, "", env, "status", "--kubeconfig", proxy.Kubeconfig, kb.name)
	if code != 0 || !strings.Contains(o, kb.name) || !strings.Contains(o, "kubernetes") || !strings.Contains(o, "running") {
		t.Errorf("status --kubeconfig %s: exit %d\n%s\n%s", kb.name, code, o, e)
	}

	// exec, through the API.
	execIn := func(cmd string) (int, string) {
		t.Helper()
		code, o, e := runCLI(t, bin, "", env, "exec", kb.name, "--", "sh", "-c", cmd)
		return code, strings.TrimSpace(o + e)
	}
	if code, o := execIn("exit 3"); code != 3 {
		t.Errorf("exec exit 3: %d %s", code, o)
	}
	if code, o := execIn(`echo "$GREETING $(id -u):$(id -g) $(pwd)"`); code != 0 || o != "hello 1000:1000 /workspace" {
		t.Errorf("exec: %d %q, want hello 1000:1000 /workspace", code, o)
	}
	// Files: in the volume and outside it, with their owner and mode.
	if code, o := execIn("stat -c '%a %u:%g' /workspace/.seed /etc/agent.conf; cat /workspace/.seed /etc/agent.conf"); code != 0 ||
		o != "600 1000:1000\n644 1000:1000\nseeded\nx=1" {
		t.Errorf("files: %d %q", code, o)
	}
	execTerminal(t, bin, env, kb.name)

	// cp both ways.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, o, e := runCLI(t, bin, "", env, "cp", filepath.Join(dir, "in.txt"), kb.name+":/workspace/"); code != 0 {
		t.Fatalf("cp in: %d %s%s", code, o, e)
	}
	if code, o := execIn("stat -c '%u:%g' /workspace/in.txt; echo made >> /workspace/in.txt"); code != 0 || o != "1000:1000" {
		t.Errorf("cp in: the file is %q, want the agent's user's", o)
	}
	if code, o, e := runCLI(t, bin, "", env, "cp", kb.name+":/workspace/in.txt", filepath.Join(dir, "out.txt")); code != 0 {
		t.Fatalf("cp out: %d %s%s", code, o, e)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(b) != "from the host\nmade\n" {
		t.Errorf("cp out: %q %v", b, err)
	}

	// Drift: a policy and the Service deleted by hand come back; the new
	// Service has a new address, so the agent is made anew for it.
	agentBefore, bundleBefore := kb.podUID(t, "agent"), kb.podUID(t, "bundle")
	k.Kubectl(t, "", "-n", ns, "delete", "networkpolicy", bottle.ResourceName(kb.name, bottle.RoleAgent))
	k.Kubectl(t, "", "-n", ns, "delete", "service", bottle.ResourceName(kb.name, bottle.RoleBundle))
	out, _ = kb.apply(t, bin, env, 0)
	t.Logf("after drift:\n%s", out)
	k.Kubectl(t, "", "-n", ns, "get", "networkpolicy", bottle.ResourceName(kb.name, bottle.RoleAgent))
	k.Kubectl(t, "", "-n", ns, "get", "service", bottle.ResourceName(kb.name, bottle.RoleBundle))
	if a := kb.podUID(t, "agent"); a == agentBefore || a == "" {
		t.Errorf("the agent was not made anew for its bundle's new address (pod %s, was %s)", a, agentBefore)
	}
	if b := kb.podUID(t, "bundle"); b != bundleBefore {
		t.Errorf("the bundle's pod was replaced by a drift of its Service (pod %s, was %s)", b, bundleBefore)
	}

	// An env change replaces the agent's pod alone; the work survives.
	agentBefore, bundleBefore = kb.podUID(t, "agent"), kb.podUID(t, "bundle")
	kb.write(t, strings.Replace(kubeSpec(kb.name, agent, bundle, "hello"), "GREETING: hello", "GREETING: again", 1))
	out, _ = kb.apply(t, bin, env, 0)
	if !strings.Contains(out, "kubernetes-statefulset:"+kb.name+"/agent") || strings.Contains(out, "kubernetes-deployment:"+kb.name+"/bundle  ") {
		t.Errorf("the env change's plan:\n%s", out)
	}
	if a := kb.podUID(t, "agent"); a == agentBefore || a == "" {
		t.Errorf("the agent's pod was not replaced (pod %s, was %s)", a, agentBefore)
	}
	if b := kb.podUID(t, "bundle"); b != bundleBefore {
		t.Errorf("the bundle's pod was replaced by the agent's env (pod %s, was %s)", b, bundleBefore)
	}
	if code, o := execIn(`echo "$GREETING"; cat /workspace/in.txt`); code != 0 || o != "again\nfrom the host\nmade" {
		t.Errorf("after the replace: %d %q", code, o)
	}

	// Destroy keeps the volume and its namespace; --volumes removes them.
	out, _ = kb.apply(t, bin, env, 0, "--destroy")
	t.Logf("destroy:\n%s", out)
	left := kb.labelled(t)
	if !strings.Contains(left, "persistentvolumeclaim/"+bottle.VolumeName(kb.name, "work")) || !strings.Contains(left, "namespace/"+ns) ||
		strings.Contains(left, "statefulset") || strings.Contains(left, "pod/") {
		t.Errorf("after destroy, left: %s", left)
	}
	kb.apply(t, bin, env, 0, "--destroy", "--volumes")
	if left := kb.labelled(t); left != "" {
		t.Errorf("after destroy --volumes, left: %s", left)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// kubePlainSpec is a bottle on the test cluster with neither volumes nor
// files: a sleeping agent and the built-in bundle's daemons.
func kubePlainSpec(name, agentImage, bundleImage string) string {
	return kubeBottleSpec(name, agentImage, bundleImage, "", "")
}

// TestKubeE2EConcurrentApplies races ten applies of one spec of a new
// bottle on the cluster, in two ways:
//
//   - one machine: the ten share a state directory, so they queue on the
//     bottle's lock; the first makes the bottle, the nine after it find
//     it made and change nothing;
//   - ten machines: each has a state directory of its own, as ten
//     laptops on one cluster do, so no lock orders them and they meet on
//     the API server: server-side apply of the same objects is
//     idempotent, and a creation another run made first is no error.
//
// Either way every run exits 0, the cluster holds one set of the
// bottle's objects and one pod of each role, and the apply after the
// race changes nothing (--detailed-exitcode exits 0).
func TestKubeE2EConcurrentApplies(t *testing.T) {
	k := testenv.Kube(t)
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	agent := testenv.AgentImage(t, c)
	k.LoadImage(t, agent)
	bundle := kubeBundleImage(t, c, k)
	for _, tc := range []struct {
		name       string
		ownLockDir bool
	}{
		{"one machine", false},
		{"ten machines", true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			start := time.Now()
			kb := newKubePlainBottle(t, k, agent, bundle)
			shared := t.TempDir()
			const n = 10
			var wg sync.WaitGroup
			type outcome struct {
				code      int
				out, errs string
			}
			results := make([]outcome, n)
			for i := range n {
				state := shared
				if tc.ownLockDir {
					state = t.TempDir()
				}
				env := append(slices.Clip(kb.env), "XDG_STATE_HOME="+state)
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i].code, results[i].out, results[i].errs = runConcurrent(bin, env, "-f", kb.spec, "--no-verify")
				}()
			}
			wg.Wait()
			made := 0
			for i, r := range results {
				if r.code != 0 {
					t.Errorf("apply %d of %d: exit %d\nstdout:\n%s\nstderr:\n%s", i+1, n, r.code, r.out, r.errs)
				}
				if !strings.HasPrefix(r.out, "No changes.") {
					made++
				}
			}
			raced := time.Since(start)
			// On one machine the lock lets one run make the bottle; on ten,
			// several may plan a creation before any lands.
			if !tc.ownLockDir && made != 1 {
				t.Errorf("%d of %d runs planned changes, want 1 (the lock orders them)", made, n)
			}
			kb.checkOneSet(t)
			kb.apply(t, bin, kb.env, 0, "--no-verify", "--detailed-exitcode")
			t.Logf("%s: %d concurrent applies (%d planned changes) in %s, then a no-op; total %s",
				tc.name, n, made, raced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		})
	}
}

// runConcurrent runs bottle-apply from a goroutine of its own, where the
// test must not fail (runCLI would): a process that cannot start is exit
// -1 with the reason as its standard error.
func runConcurrent(bin string, env []string, args ...string) (int, string, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		return -1, out.String(), err.Error()
	}
	return 0, out.String(), errb.String()
}

// newKubePlainBottle writes a kubePlainSpec for a new bottle; the bottle
// and its namespace are removed when the test ends, whatever happened.
func newKubePlainBottle(t *testing.T, k testenv.KubeEnv, agentImage, bundleImage string) *kubeBottle {
	t.Helper()
	name := testenv.Name("kc")
	kb := &kubeBottle{name: name, k: k, spec: filepath.Join(t.TempDir(), "bottle.yaml"), env: []string{"KUBECONFIG=" + k.Kubeconfig}}
	kb.write(t, kubePlainSpec(name, agentImage, bundleImage))
	t.Cleanup(func() { kb.destroy(t) })
	return kb
}

// destroy removes the bottle with bottle-apply, then its namespace by
// hand (in case the destroy failed), and says what is left.
func (kb *kubeBottle) destroy(t *testing.T) {
	t.Helper()
	// The test's context is done by now: runCLI would not run.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), "-f", kb.spec, "--destroy", "--volumes", "--no-verify")
	cmd.Env = append(os.Environ(), kb.env...)
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("cleanup: destroy: %v\n%s", err, out)
	}
	_, _ = kb.k.TryKubectl("", "delete", "namespace", bottle.NamePrefix+kb.name, "--ignore-not-found", "--wait=false")
}

// checkOneSet checks that the cluster holds exactly one set of the
// bottle's objects, all labelled, and one running pod of each role.
func (kb *kubeBottle) checkOneSet(t *testing.T) {
	t.Helper()
	ns := bottle.NamePrefix + kb.name
	agentName, bundleName := bottle.ResourceName(kb.name, bottle.RoleAgent), bottle.ResourceName(kb.name, bottle.RoleBundle)
	want := []string{
		"namespace/" + ns,
		"service/" + bundleName,
		"networkpolicy.networking.k8s.io/" + agentName,
		"networkpolicy.networking.k8s.io/" + bundleName,
		"deployment.apps/" + bundleName,
		"statefulset.apps/" + agentName,
	}
	got := strings.Fields(kb.k.Kubectl(t, "", "get", "namespaces,services,networkpolicies,deployments,statefulsets", "-A",
		"-l", bottle.LabelName+"="+kb.name, "-o", "name"))
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the bottle's labelled objects:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// Whatever the namespace holds, labelled or not: nothing twice, nothing
	// unlabelled beside the bottle's.
	all := strings.Fields(kb.k.Kubectl(t, "", "-n", ns, "get", "services,networkpolicies,deployments,statefulsets,replicasets,pods",
		"-o", `jsonpath={range .items[*]}{.kind}/{.metadata.name}/{.metadata.labels.io\.bottle-apply\.name}/{.status.phase}{"\n"}{end}`))
	kinds := map[string]int{}
	running := map[string]int{}
	for _, o := range all {
		f := strings.Split(o, "/")
		kinds[f[0]]++
		if f[2] != kb.name {
			t.Errorf("%s/%s in the bottle's namespace is not labelled as the bottle's", f[0], f[1])
		}
		if f[0] == "Pod" && f[3] == "Running" {
			running[f[1]]++
		}
	}
	for kind, n := range map[string]int{"Service": 1, "NetworkPolicy": 2, "Deployment": 1, "StatefulSet": 1, "ReplicaSet": 1, "Pod": 2} {
		if kinds[kind] != n {
			t.Errorf("the bottle's namespace holds %d %s, want %d: %v", kinds[kind], kind, n, all)
		}
	}
	for _, role := range []string{bottle.RoleAgent, bottle.RoleBundle} {
		pods := strings.Fields(kb.k.Kubectl(t, "", "-n", ns, "get", "pods", "-l", bottle.LabelName+"="+kb.name+","+bottle.LabelRole+"="+role,
			"--field-selector=status.phase=Running", "-o", "name"))
		if len(pods) != 1 {
			t.Errorf("running %s pods: %v, want one", role, pods)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// kubeDoc is the kubernetes section: no-op applies of 1 and of 20 bottles
// on the cluster that BOTTLE_APPLY_TEST_KUBECONFIG names, their calls
// counted by a proxy in front of its API server.
type kubeDoc struct {
	Skipped string        `json:"skipped,omitempty"` // why there is no section
	Server  string        `json:"server,omitempty"`
	Version string        `json:"version,omitempty"`
	Cases   []kubeCaseDoc `json:"cases,omitempty"`
	Targets []targetDoc   `json:"targets,omitempty"`
}

type kubeCaseDoc struct {
	Name        string    `json:"case"`
	Bottles     int       `json:"bottles"`
	WallMS      []float64 `json:"wallMs"`
	MedianMS    float64   `json:"medianMs"`
	APICalls    []int     `json:"apiCalls"`
	MedianCalls float64   `json:"medianApiCalls"`
	Writes      []string  `json:"writes"` // over every round; a no-op makes none
	MaxRSSKiB   int64     `json:"maxRssKiB"`
	Calls       []string  `json:"calls"` // of the first measured round
}

// kubeSizes are the numbers of bottles of the kubernetes cases.
var kubeSizes = []int{1, 20}

// kubeSpecs is one spec file of n bottles on the cluster, one document
// each, without volumes: bb:local sleeping, the built-in bundle image.
// The agent asks for 64 MiB (not the default 8 GiB): the node must hold
// the memory limits of 20 agents and 20 bundles (512 MiB each) at once.
func kubeSpecs(prefix string, n int, bundleRef string) []byte {
	var docs []string
	for i := range n {
		docs = append(docs, fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s-k%d-%02d
spec:
  backend: kubernetes
  agent:
    image: %s
    command: ["sleep", "infinity"]
    memory: 64
  bundle:
    image: %s
    daemons: [egress, dns]
`, prefix, n, i, benchImage, bundleRef))
	}
	return []byte(strings.Join(docs, "---\n"))
}

// kube measures no-op applies of 1 and of 20 bottles on the test cluster,
// when BOTTLE_APPLY_TEST_KUBECONFIG names one (else the section says why
// it was skipped): the bottles are made first (unmeasured), and destroyed
// at the end. bundleRef is the built-in bundle image in the docker engine,
// which the cluster gets a copy of. A cluster that is named but fails
// fails the bench.
func (b *bench) kube(root, work string, rounds int, bundleRef string) (*kubeDoc, error) {
	kc := os.Getenv("BOTTLE_APPLY_TEST_KUBECONFIG")
	if kc == "" {
		return &kubeDoc{Skipped: "BOTTLE_APPLY_TEST_KUBECONFIG names no cluster (export $(hack/k8s/env.sh) with the test cluster up)"}, nil
	}
	if _, err := os.Stat(kc); err != nil {
		return &kubeDoc{Skipped: fmt.Sprintf("BOTTLE_APPLY_TEST_KUBECONFIG: %v", err)}, nil
	}
	d := &kubeDoc{}
	if err := b.kubeMeasure(root, work, kc, rounds, bundleRef, d); err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return d, nil
}

func (b *bench) kubeMeasure(root, work, kc string, rounds int, bundleRef string, d *kubeDoc) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("no cluster answers at %s: %w", cfg.Host, err)
	}
	d.Server, d.Version = cfg.Host, v.GitVersion
	dir := filepath.Join(work, "kube")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	px, err := testenv.NewKubeProxy(kc, dir)
	if err != nil {
		return err
	}
	defer px.Close()
	if err := ensureBundleImage(b.ctx, b.dc, b.ba, bundleRef); err != nil {
		return err
	}
	logf("kubernetes: loading %s and %s into the cluster", benchImage, bundleRef)
	if err := loadIntoCluster(b.ctx, root, benchImage, bundleRef); err != nil {
		return err
	}
	files := map[int]string{}
	defer func() { b.kubeCleanup(cs, px.Kubeconfig, files) }()
	for _, n := range kubeSizes {
		files[n] = filepath.Join(dir, fmt.Sprintf("bottles-%d.yaml", n))
		if err := os.WriteFile(files[n], kubeSpecs(b.prefix, n, bundleRef), 0o644); err != nil {
			return err
		}
		logf("kubernetes: making %d bottles (unmeasured)", n)
		if _, err := b.kexec(px, "-f", files[n], "--no-verify", "--kube-ready-timeout", "10m"); err != nil {
			return err
		}
	}
	cases := map[int]*kubeCaseDoc{}
	for _, n := range kubeSizes {
		cases[n] = &kubeCaseDoc{Name: fmt.Sprintf("no-op apply, %d bottle%s", n, map[bool]string{true: "s"}[n > 1]), Bottles: n, Writes: []string{}}
	}
	for r := 0; r <= rounds; r++ {
		if r == 0 {
			logf("kubernetes: warm-up round")
		} else {
			logf("kubernetes: round %d/%d", r, rounds)
		}
		for _, n := range kubeSizes {
			// --detailed-exitcode: a run that changed something exits 2,
			// which fails the bench.
			s, err := b.kexec(px, "-f", files[n], "--detailed-exitcode")
			if err != nil {
				return err
			}
			if r == 0 {
				continue
			}
			c := cases[n]
			c.WallMS = append(c.WallMS, ms(s.Wall))
			c.APICalls = append(c.APICalls, len(s.Calls))
			c.MaxRSSKiB = max(c.MaxRSSKiB, s.RSSKiB)
			for _, call := range s.Calls {
				c.Writes = append(c.Writes, testenv.KubeWrites([]string{call.Name})...)
				if r == 1 {
					c.Calls = append(c.Calls, call.Name)
				}
			}
		}
	}
	for _, n := range kubeSizes {
		c := cases[n]
		var calls []float64
		for _, x := range c.APICalls {
			calls = append(calls, float64(x))
		}
		c.MedianMS, c.MedianCalls = median(c.WallMS), median(calls)
		d.Cases = append(d.Cases, *c)
	}
	one, many := cases[kubeSizes[0]], cases[kubeSizes[len(kubeSizes)-1]]
	flat := many.MedianCalls <= one.MedianCalls
	var writes []string
	for _, c := range d.Cases {
		writes = append(writes, c.Writes...)
	}
	none := len(writes) == 0
	flatT := targetDoc{Name: fmt.Sprintf("kubernetes no-op: calls, %d bottles ≤ 1 bottle", many.Bottles),
		Value: fmt.Sprintf("%g vs %g", many.MedianCalls, one.MedianCalls), Holds: &flat}
	if !flat {
		flatT.Breakdown = "the calls of 20 not in 1: " + strings.Join(extraKinds(many.Calls, one.Calls), ", ")
	}
	writeT := targetDoc{Name: "kubernetes no-op: no write", Value: fmt.Sprintf("%d writes", len(writes)), Holds: &none}
	if !none {
		writeT.Breakdown = strings.Join(writes, ", ")
	}
	d.Targets = []targetDoc{flatT, writeT}
	return nil
}

// extraKinds lists the calls of a that b has not.
func extraKinds(a, b []string) []string {
	var out []string
	for _, c := range a {
		if !slices.Contains(b, c) {
			out = append(out, c)
		}
	}
	return out
}

// kexec runs bottle-apply on the cluster through the counting proxy and
// measures it.
func (b *bench) kexec(px *testenv.KubeProxy, args ...string) (sample, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.ba, args...)
	cmd.Env = append(slices.Clip(b.env), b.baEnv...)
	cmd.Env = append(cmd.Env, "KUBECONFIG="+px.Kubeconfig)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	px.Take() // forget stray calls
	s := sample{Start: time.Now()}
	err := cmd.Run()
	s.Wall = time.Since(s.Start)
	for _, c := range px.Take() {
		s.Calls = append(s.Calls, testenv.Call{Name: c})
	}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.RSSKiB = ru.Maxrss
		}
	}
	if err != nil {
		return s, fmt.Errorf("bottle-apply %s: %v\n%s", strings.Join(args, " "), err, out.Bytes())
	}
	return s, nil
}

// ensureBundleImage makes the built-in bundle image ref in the docker
// engine from the bottle-bundle build beside bottle-apply ba, unless a
// docker apply made it already (the docker cases do; -kubernetes-only
// does not), as the docker provider imports it.
func ensureBundleImage(ctx context.Context, dc *client.Client, ba, ref string) error {
	if _, err := dc.ImageInspect(ctx, ref); err == nil {
		return nil
	}
	bin := filepath.Join(filepath.Dir(ba), bundlebin.Name(runtime.GOARCH))
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(bundleimage.WriteRootfs(pw, bin)) }()
	rc, err := dc.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["` + bundleimage.BinaryPath + `"]`}})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("import the bundle image %s: %w", ref, err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// loadIntoCluster copies images from the docker engine into the test
// cluster's containerd (hack/k8s/load-image.sh), as the tests do.
func loadIntoCluster(ctx context.Context, root string, refs ...string) error {
	load := os.Getenv("BOTTLE_APPLY_TEST_K8S_LOAD")
	if load == "" {
		load = filepath.Join(root, "hack", "k8s", "load-image.sh")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, load, refs...).CombinedOutput(); err != nil {
		return fmt.Errorf("load %s into the cluster: %v\n%s", strings.Join(refs, " "), err, out)
	}
	return nil
}

// kubeCleanup destroys the bench's bottles on the cluster, then deletes
// whatever namespace of its bottles is left (and says so).
func (b *bench) kubeCleanup(cs *kubernetes.Clientset, kubeconfig string, files map[int]string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, n := range kubeSizes {
		f := files[n]
		if f == "" {
			continue
		}
		cmd := exec.CommandContext(ctx, b.ba, "-f", f, "--destroy", "--volumes")
		cmd.Env = append(append(slices.Clip(b.env), b.baEnv...), "KUBECONFIG="+kubeconfig)
		cmd.WaitDelay = 5 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			logf("cleanup: kubernetes: destroy %d bottles: %v\n%s", n, err, out)
		}
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: bottle.LabelName})
	if err != nil {
		logf("cleanup: kubernetes: list namespaces: %v", err)
		return
	}
	for _, ns := range nss.Items {
		if !strings.HasPrefix(ns.Labels[bottle.LabelName], b.prefix+"-k") || ns.DeletionTimestamp != nil {
			continue
		}
		logf("cleanup: kubernetes: deleting leftover namespace %s", ns.Name)
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !errors.Is(err, context.Canceled) {
			logf("cleanup: kubernetes: delete namespace %s: %v", ns.Name, err)
		}
	}
}

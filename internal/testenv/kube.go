package testenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// KubeEnv is the single-node Kubernetes cluster that hack/k8s runs for the
// tests (make test-kubernetes): Kubernetes v1.34.4 with containerd, a CNI
// bridge and kube-router enforcing NetworkPolicy, inside the network
// namespace Netns, whose node address NodeIP the host reaches over a veth.
// hack/k8s/env.sh names it to the tests through the environment.
type KubeEnv struct {
	// Kubeconfig is the admin kubeconfig (BOTTLE_APPLY_TEST_KUBECONFIG).
	Kubeconfig string
	// Registry is the host:port, on the host's end of the veth, where a
	// test may start a plain-HTTP registry: the cluster's containerd pulls
	// from it over HTTP (BOTTLE_APPLY_TEST_K8S_REGISTRY, 10.200.0.1:5000).
	// Pods reach it too.
	Registry string
	// NodeIP is the node's address (BOTTLE_APPLY_TEST_K8S_NODE_IP,
	// 10.200.0.10): the apiserver listens on NodeIP:6443.
	NodeIP string
	// Netns is the node's network namespace, /run/netns/Netns
	// (BOTTLE_APPLY_TEST_K8S_NETNS, k8s).
	Netns string
	// Bin is the directory of the cluster's binaries, kubectl among them
	// (BOTTLE_APPLY_TEST_K8S_BIN); empty when not named, and kubectl is
	// looked for on PATH.
	Bin string

	load string
}

// Kube returns the test cluster that make test-kubernetes starts. Without
// one (BOTTLE_APPLY_TEST_KUBECONFIG unset) it skips the test, unless
// BOTTLE_APPLY_TEST_KUBERNETES=1 says the cluster should be there
// (hack/k8s/test.sh sets it): then it fails. It skips under -short.
func Kube(t testing.TB) KubeEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("talks to a Kubernetes cluster: skipped under -short")
	}
	required := os.Getenv("BOTTLE_APPLY_TEST_KUBERNETES") == "1"
	missing := func(format string, args ...any) {
		t.Helper()
		if required {
			t.Fatalf("BOTTLE_APPLY_TEST_KUBERNETES=1 but "+format, args...)
		}
		t.Skipf(format+"; the Kubernetes tests run in make test-kubernetes", args...)
	}
	k := KubeEnv{
		Kubeconfig: os.Getenv("BOTTLE_APPLY_TEST_KUBECONFIG"),
		Registry:   envOr("BOTTLE_APPLY_TEST_K8S_REGISTRY", "10.200.0.1:5000"),
		NodeIP:     envOr("BOTTLE_APPLY_TEST_K8S_NODE_IP", "10.200.0.10"),
		Netns:      envOr("BOTTLE_APPLY_TEST_K8S_NETNS", "k8s"),
		Bin:        os.Getenv("BOTTLE_APPLY_TEST_K8S_BIN"),
		load:       os.Getenv("BOTTLE_APPLY_TEST_K8S_LOAD"),
	}
	if k.Kubeconfig == "" {
		missing("BOTTLE_APPLY_TEST_KUBECONFIG is not set (no test cluster)")
	}
	if _, err := os.Stat(k.Kubeconfig); err != nil {
		missing("the test cluster's kubeconfig: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", k.Netns)); err != nil {
		missing("the test cluster's network namespace: %v", err)
	}
	return k
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// KubectlPath is the kubectl of the cluster's build, else the one on PATH.
func (k KubeEnv) KubectlPath(t testing.TB) string {
	t.Helper()
	if k.Bin != "" {
		p := filepath.Join(k.Bin, "kubectl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("no kubectl in BOTTLE_APPLY_TEST_K8S_BIN (%q) nor on PATH", k.Bin)
	}
	return p
}

// Kubectl runs kubectl with the cluster's kubeconfig and args, stdin (when
// not empty) on its standard input, and returns its standard output; it
// fails the test when kubectl fails. It gives up after two minutes.
func (k KubeEnv) Kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := k.TryKubectl(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// TryKubectl is Kubectl that returns the failure, with kubectl's standard
// error, instead of failing the test.
func (k KubeEnv) TryKubectl(stdin string, args ...string) (string, error) {
	kubectl := "kubectl"
	if k.Bin != "" {
		if p := filepath.Join(k.Bin, "kubectl"); fileExists(p) {
			kubectl = p
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &kubectlError{err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.String(), nil
}

type kubectlError struct {
	err    error
	stderr string
}

func (e *kubectlError) Error() string { return e.err.Error() + ": " + e.stderr }
func (e *kubectlError) Unwrap() error { return e.err }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// LoadImage copies the images refs (tagged names) from the Docker engine of
// the environment into the cluster's containerd (hack/k8s/load-image.sh),
// so that pods run them with imagePullPolicy IfNotPresent or Never.
func (k KubeEnv) LoadImage(t testing.TB, refs ...string) {
	t.Helper()
	if len(refs) == 0 {
		return
	}
	load := k.load
	if load == "" {
		load = filepath.Join(moduleRoot(), "hack", "k8s", "load-image.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, load, refs...).CombinedOutput()
	if err != nil {
		t.Fatalf("load %s into the cluster: %v\n%s", strings.Join(refs, " "), err, out)
	}
}

// StartRegistry starts an in-memory plain-HTTP registry on k.Registry (the
// host's end of the cluster's veth), which the cluster's containerd pulls
// from over HTTP, and stops it when the test ends. Images pushed there are
// named k.Registry+"/NAME:TAG"; push with name.Insecure. One address serves
// every test process: while another holds it, this waits (two minutes at
// most), so tests that use it should not run in parallel.
func (k KubeEnv) StartRegistry(t testing.TB) {
	t.Helper()
	var l net.Listener
	var err error
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		l, err = net.Listen("tcp", k.Registry)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("listen on the registry address %s (the cluster's veth): %v", k.Registry, err)
	}
	srv := &http.Server{
		Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

// ExecInNetns returns a command that runs args inside the cluster's network
// namespace (nsenter --net=/run/netns/NETNS), for tests that must listen
// where the node is, e.g. a server that pods reach at NodeIP. The caller
// runs or starts it; it is killed when the test ends (t.Context()).
func (k KubeEnv) ExecInNetns(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	if len(args) == 0 {
		t.Fatal("ExecInNetns: no command")
	}
	return exec.CommandContext(t.Context(), "nsenter",
		append([]string{"--net=" + filepath.Join("/run/netns", k.Netns), "--"}, args...)...)
}

// KubeExecInNetns is Kube(t).ExecInNetns(t, args...).
func KubeExecInNetns(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	return Kube(t).ExecInNetns(t, args...)
}

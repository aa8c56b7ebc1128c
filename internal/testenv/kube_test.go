package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bottle-apply/bottle-apply/internal/tarcopy"
)

// The cluster's node is Ready, at the address the environment names.
func TestKubeClusterAnswers(t *testing.T) {
	k := Kube(t)
	out := k.Kubectl(t, "", "get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one node, got:\n%s", out)
	}
	f := strings.Fields(lines[0])
	if len(f) != 3 || f[1] != "True" || f[2] != k.NodeIP {
		t.Fatalf("want node Ready=True with InternalIP %s, got %q", k.NodeIP, lines[0])
	}
}

// A listener started in the node's namespace answers at the node's address.
func TestKubeExecInNetns(t *testing.T) {
	k := Kube(t)
	bb, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	var got bytes.Buffer
	srv := KubeExecInNetns(t, bb, "nc", "-l", "-p", fmt.Sprint(port))
	srv.Stdout = &got
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(k.NodeIP, fmt.Sprint(port))
	var c net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial the listener in the namespace at %s: %v", addr, err)
	}
	_, _ = c.Write([]byte("hello-from-the-host\n"))
	c.Close()
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener in the namespace did not end after the connection closed")
	}
	if !strings.Contains(got.String(), "hello-from-the-host") {
		t.Fatalf("the listener in the namespace got %q", got.String())
	}
}

// busyboxRootfs writes a root file system of a static busybox and the
// applets the pods below use into dir.
func busyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	bb, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "echo", "cat", "nc", "printf", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
}

// runPod runs a pod of image with the pull policy and the shell command
// until it ends, and returns its log; it fails the test unless the pod
// succeeds within two minutes. The pod is deleted when the test ends.
func runPod(t *testing.T, k KubeEnv, image, pull, command string) string {
	t.Helper()
	pod := Name("t")
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  automountServiceAccountToken: false
  containers:
  - name: c
    image: %q
    imagePullPolicy: %s
    command: ["/bin/sh", "-c", %q]
`, pod, image, pull, command)
	k.Kubectl(t, manifest, "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = k.TryKubectl("", "-n", "default", "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")
	})
	var phase string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		phase = strings.TrimSpace(k.Kubectl(t, "", "-n", "default", "get", "pod", pod, "-o", "jsonpath={.status.phase}"))
		if phase == "Succeeded" || phase == "Failed" {
			break
		}
	}
	logs, _ := k.TryKubectl("", "-n", "default", "logs", pod)
	if phase != "Succeeded" {
		desc, _ := k.TryKubectl("", "-n", "default", "describe", "pod", pod)
		t.Fatalf("pod %s of %s: phase %q, want Succeeded; log:\n%s\n%s", pod, image, phase, logs, desc)
	}
	return logs
}

// An image that the system engine built (docker build, FROM scratch) runs
// in the cluster once LoadImage put it there, without any registry.
func TestKubeLoadImage(t *testing.T) {
	k := Kube(t)
	c := Docker(t)
	dir := t.TempDir()
	busyboxRootfs(t, filepath.Join(dir, "rootfs"))
	dockerfile := "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD [\"/bin/sh\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := "bottle-apply-test/kube-load:" + Name("t")
	build := exec.Command("docker", "build", "-q", "-t", ref, dir)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	removeImage(t, c, ref)
	k.LoadImage(t, ref)
	if got := runPod(t, k, ref, "Never", "echo hello-from-a-loaded-image"); !strings.Contains(got, "hello-from-a-loaded-image") {
		t.Fatalf("the pod's log: %q", got)
	}
}

// The cluster pulls over plain HTTP from a registry on k.Registry, and a pod
// reaches that registry (the host's end of the veth) at its address.
func TestKubeRegistryPull(t *testing.T) {
	k := Kube(t)
	k.StartRegistry(t)

	// A FROM-scratch busybox image, pushed with a unique tag.
	dir := t.TempDir()
	busyboxRootfs(t, dir)
	var layerTar bytes.Buffer
	if err := tarcopy.Write(&layerTar, dir+"/.", "", &tarcopy.Owner{}); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := k.Registry + "/bottle-apply-test/pulled:" + Name("t")
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	host, port, _ := net.SplitHostPort(k.Registry)
	probe := fmt.Sprintf(`printf 'GET /v2/ HTTP/1.0\r\n\r\n' | nc -w 5 %s %s`, host, port)
	got := runPod(t, k, ref, "Always", "echo hello-from-a-pulled-image; "+probe)
	if !strings.Contains(got, "hello-from-a-pulled-image") {
		t.Fatalf("the pod's log: %q", got)
	}
	if !strings.Contains(got, " 200 ") {
		t.Fatalf("the pod did not reach the registry at %s: its log: %q", k.Registry, got)
	}
}

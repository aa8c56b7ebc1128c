package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// Addresses the isolation test gives the cluster's network namespace (on
// its loopback, removed after): an upstream the allowlist lets through,
// one it refuses (documentation addresses, which the bundle's policy
// does not exclude), and a stand-in for a cloud's metadata service.
const (
	upAllowed  = "192.0.2.10"
	upRefused  = "192.0.2.11"
	metadataIP = "169.254.169.254"
	upPort     = "8080"
)

// isolationSpec is a bottle whose allowCIDRs name upAllowed alone: the
// proxy lets that address through, and no other.
func isolationSpec(name, agentImage, bundleImage string) string {
	return kubeBottleSpec(name, agentImage, bundleImage, "",
		"  network:\n    allowCIDRs: ["+upAllowed+"/32]\n")
}

// netnsListener serves a page on addr:upPort inside the cluster's network
// namespace, on an address the test adds to its loopback; both go when
// the test ends.
func netnsListener(t *testing.T, k testenv.KubeEnv, addr string) {
	t.Helper()
	out, err := exec.Command("ip", "-n", k.Netns, "addr", "add", addr+"/32", "dev", "lo").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "File exists") {
		t.Fatalf("add %s in netns %s: %v %s", addr, k.Netns, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "-n", k.Netns, "addr", "del", addr+"/32", "dev", "lo").Run() })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("reached "+addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busybox, err := testenv.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	cmd := k.ExecInNetns(t, busybox, "httpd", "-f", "-p", addr+":"+upPort, "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// TestKubeE2EIsolation attacks from inside the agent's pod: each
// attack fails while the bottle's policies hold, and the same attacks
// succeed once the policies are deleted by hand, which the self-test
// then reports as holes; an apply puts them back.
func TestKubeE2EIsolation(t *testing.T) {
	k, bin, agent, bundle := kubeImages(t)
	kb := newKubeBottle(t, k, agent, bundle)
	kb.write(t, isolationSpec(kb.name, agent, bundle))
	env := kb.env
	ns := bottle.NamePrefix + kb.name

	// Targets: another pod serving HTTP, the host (a listener of the
	// test on the host's end of the cluster's veth), the stand-ins.
	other := testenv.Name("other")
	k.Kubectl(t, "", "create", "namespace", other)
	t.Cleanup(func() { _, _ = k.TryKubectl("", "delete", "namespace", other, "--wait=false") })
	k.Kubectl(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web, namespace: %s}
spec:
  automountServiceAccountToken: false
  containers:
  - {name: web, image: k8s.local/busybox:1.35, imagePullPolicy: Never, command: ["httpd", "-f", "-p", "8080", "-h", "/www"]}
`, other), "apply", "-f", "-")
	k.Kubectl(t, "", "-n", other, "wait", "--for=condition=Ready", "pod/web", "--timeout=120s")
	otherPod := strings.TrimSpace(k.Kubectl(t, "", "-n", other, "get", "pod", "web", "-o", "jsonpath={.status.podIP}"))
	hostHost, _, _ := strings.Cut(k.Registry, ":")
	hl, err := net.Listen("tcp", net.JoinHostPort(hostHost, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "reached the host") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(hl) }()
	t.Cleanup(func() { _ = srv.Close() })
	for _, a := range []string{upAllowed, upRefused, metadataIP} {
		netnsListener(t, k, a)
	}
	apiserver := strings.TrimSpace(k.Kubectl(t, "", "-n", "default", "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"))

	kb.apply(t, bin, env, 0)
	bundleIP := strings.TrimSpace(k.Kubectl(t, "", "-n", ns, "get", "service", bottle.ResourceName(kb.name, bottle.RoleBundle), "-o", "jsonpath={.spec.clusterIP}"))

	sh := func(cmd string) string {
		t.Helper()
		_, o, e := runCLI(t, bin, "", env, "exec", kb.name, "--", "sh", "-c", cmd)
		return strings.TrimSpace(o + e)
	}
	// connects says whether the agent opens a TCP connection: a refusal
	// (a reset, or a policy's ICMP reject) and silence are both no.
	connects := func(addr string) bool {
		return sh("nc -w 2 "+strings.Replace(addr, ":", " ", 1)+" </dev/null >/dev/null 2>&1 && echo open || echo closed") == "open"
	}
	direct := []struct{ name, addr string }{
		{"another pod", otherPod + ":8080"},
		{"the API server's ClusterIP", apiserver + ":443"},
		{"the node's API server", k.NodeIP + ":6443"},
		{"the node's kubelet", k.NodeIP + ":10250"},
		{"the host", hl.Addr().String()},
		{"the metadata stand-in", metadataIP + ":" + upPort},
		{"an upstream the allowlist refuses, directly", upRefused + ":" + upPort},
	}
	for _, a := range direct {
		if connects(a.addr) {
			t.Errorf("the agent connects to %s at %s", a.name, a.addr)
		}
	}
	// DNS goes to the bundle alone.
	if o := sh("nslookup -timeout=2 example.com " + k.NodeIP + " 2>&1 | grep -c 'Address.*example' || true"); o != "0" {
		t.Errorf("the agent got an answer from a resolver on the node: %s", o)
	}
	// Through the proxy: what the allowlist allows, and nothing else.
	via := func(url string) string {
		return sh(fmt.Sprintf(`(printf 'GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'; sleep 3) | nc -w 4 %s %d | head -1`, url, bundleIP, bottle.ProxyPort))
	}
	if o := via("http://" + upAllowed + ":" + upPort + "/"); !strings.Contains(o, " 200 ") {
		t.Errorf("the proxy does not let the allowed upstream through: %q", o)
	}
	for _, u := range []string{upRefused + ":" + upPort, metadataIP + ":" + upPort, hl.Addr().String(), k.NodeIP + ":10250", otherPod + ":8080"} {
		if o := via("http://" + u + "/"); !strings.Contains(o, " 403 ") {
			t.Errorf("the proxy does not refuse http://%s/: %q", u, o)
		}
	}
	// Nothing reaches the agent: a pod of another namespace knocks on a
	// listener the agent starts.
	sh("(httpd -p 8081 -h / &) ; sleep 0.5")
	agentIP := strings.TrimSpace(k.Kubectl(t, "", "-n", ns, "get", "pod", bottle.ResourceName(kb.name, bottle.RoleAgent)+"-0", "-o", "jsonpath={.status.podIP}"))
	knock := func() bool {
		out, _ := k.TryKubectl("", "-n", other, "exec", "web", "--", "sh", "-c", "nc -w 2 "+agentIP+" 8081 </dev/null >/dev/null 2>&1 && echo open || echo closed")
		return strings.TrimSpace(out) == "open"
	}
	if knock() {
		t.Error("a pod of another namespace connects to the agent")
	}

	// Without the policies the same attacks succeed (so the checks above
	// can fail), and the self-test says so.
	for _, np := range []string{bottle.RoleAgent, bottle.RoleBundle} {
		k.Kubectl(t, "", "-n", ns, "delete", "networkpolicy", bottle.ResourceName(kb.name, np))
	}
	deadline := time.Now().Add(30 * time.Second)
	for !connects(otherPod+":8080") && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	for _, a := range []struct{ name, addr string }{direct[0], direct[3], direct[4], direct[5]} {
		if !connects(a.addr) {
			t.Errorf("without its policy the agent still cannot connect to %s at %s: the attack proves nothing", a.name, a.addr)
		}
	}
	if !knock() {
		t.Error("without its policy a pod of another namespace still cannot connect to the agent: the attack proves nothing")
	}
	code, out, errs := runCLI(t, bin, "", env, "-f", kb.spec, "--verify")
	t.Logf("--verify without the policies: %d\n%s%s", code, out, errs)
	if code == 0 || !strings.Contains(out+errs, "connects to "+k.NodeIP+":10250") || !strings.Contains(out+errs, "must enforce NetworkPolicy") {
		t.Errorf("the self-test does not report the missing policy (exit %d)", code)
	}
	// An apply puts them back, and the attacks fail again.
	kb.apply(t, bin, env, 0)
	deadline = time.Now().Add(30 * time.Second)
	for connects(otherPod+":8080") && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	for _, a := range direct {
		if connects(a.addr) {
			t.Errorf("after the apply, the agent connects to %s at %s", a.name, a.addr)
		}
	}
}

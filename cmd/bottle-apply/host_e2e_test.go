package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/probe"
	"github.com/bottle-apply/bottle-apply/providers/docker"
)

// hostSpec is a bottle whose allowCIDRs cover the host, as a user's do who
// allows 10.0.0.0/8 or 172.16.0.0/12 for a corporate network.
func hostSpec(name, image string, cidrs []string) string {
	return fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s
spec:
  backend: docker
  agent:
    image: %s
    command: ["sleep", "infinity"]
  network:
    allowCIDRs: [%s]
  bundle:
    daemons: [egress, dns]
    egress:
      allow: [allowed.test:80]
`, name, image, strings.Join(cidrs, ", "))
}

// TestE2EHostNeverDialled is issue 12's holes 1 and 6 tried from inside an
// agent whose allowCIDRs hold every address of the engine's host: a
// service the test runs on the host's network must answer no CONNECT
// through the bundle, to the host's LAN address, docker0, another
// bottle's gateway, nor (the part no list in the bundle can know) a
// bridge made after the bundle, an address the host got after it, or a
// bottle made after it. Before the fix, each of these reached the service
// ("allowed"), and --verify passed.
//
// Not parallel: the address it gives the host for a while is one the
// other tests' applies would learn and then see go ("hostAddresses
// changed"). Go runs it before the package's parallel tests.
func TestE2EHostNeverDialled(t *testing.T) {
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	agentImage := testenv.AgentImage(t, c)
	serverImage := testenv.TestServerImage(t, c)
	ctx := t.Context()
	dir := t.TempDir()
	// A cache of its own: what it learns of the host (the address it adds
	// for a while) stays out of the other tests' runs.
	env := []string{"XDG_CACHE_HOME=" + t.TempDir()}
	run := func(args ...string) (int, string, string) { return runCLI(t, bin, "", env, args...) }

	// The host's own service, where a port scan would look.
	port := fmt.Sprint(20000 + rand.IntN(20000))
	onHost(t, c, serverImage, false, "-name", "hostsvc", "-http", port)
	hostIPs := engineHostAddrs(t, c, agentImage)
	cidrs := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
	for _, a := range hostIPs {
		cidrs = append(cidrs, a+"/32")
	}

	name, other, later := testenv.Name("host"), testenv.Name("host"), testenv.Name("host")
	for _, n := range []string{name, other, later} {
		testenv.CleanupBottle(t, c, n)
	}
	for _, n := range []string{name, other} {
		if err := os.WriteFile(filepath.Join(dir, n+".yaml"), []byte(hostSpec(n, agentImage, cidrs)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errOut := run("-f", dir); code != 0 || !strings.Contains(out, "checks passed") {
		t.Fatalf("apply exited %d\n%s\n%s", code, out, errOut)
	}

	// After the bundle: a bridge, an address of the host, a bottle.
	bridgeGW := laterBridge(t, c)
	newAddr := laterHostAddr(t, c, agentImage)
	laterSpec := filepath.Join(t.TempDir(), later+".yaml")
	if err := os.WriteFile(laterSpec, []byte(hostSpec(later, agentImage, cidrs)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run("-f", laterSpec); code != 0 {
		t.Fatalf("apply of the later bottle exited %d\n%s\n%s", code, out, errOut)
	}
	dp := docker.New(c, docker.Options{})
	gateway := func(b string) string {
		a, err := dp.Addresses(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		return a.EgressGateway
	}
	addrs, err := dp.Addresses(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	proxy := net.JoinHostPort(addrs.BundleIP, fmt.Sprint(bottle.ProxyPort))

	type row struct {
		name string
		addr string
		// refused: the bundle itself refuses with a 403 before any dial;
		// else only the host guard's rule stands between (the bundle
		// dials, the host drops it, the proxy answers 502).
		refused bool
	}
	var rows []row
	for _, a := range hostIPs {
		rows = append(rows, row{"the host's address " + a, a, true})
	}
	rows = append(rows,
		row{"another bottle's gateway", gateway(other), true},
		row{"a bottle's gateway made after the bundle", gateway(later), true},
		row{"a bridge's gateway made after the bundle", bridgeGW, false},
		row{"an address the host got after the bundle", newAddr, false},
	)
	var checks []probe.Check
	for _, r := range rows {
		checks = append(checks, probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: net.JoinHostPort(r.addr, port), Expect: probe.ExpectDenied})
	}
	// A closed port answers as an open one does: nothing to scan.
	checks = append(checks, probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: net.JoinHostPort(hostIPs[0], "1"), Expect: probe.ExpectDenied})
	rows = append(rows, row{"a closed port of the host's address " + hostIPs[0], hostIPs[0], true})

	res := runProbes(t, c, bin, name, checks)
	for i, r := range rows {
		got := res[i]
		switch {
		case got.Got == string(probe.ExpectAllowed):
			t.Errorf("%s (%s): the agent reached the host's service through the bundle: %s", r.name, checks[i].Target, got.Detail)
		case r.refused && got.Got != string(probe.ExpectDenied):
			t.Errorf("%s (%s): got %s (%s), want the bundle's 403 before any dial", r.name, checks[i].Target, got.Got, got.Detail)
		}
		t.Logf("%-45s %-22s %s: %s", r.name, checks[i].Target, got.Got, got.Detail)
	}

	// The bundle learns the host's new address at its next apply, which
	// replaces it alone.
	spec := filepath.Join(dir, name+".yaml")
	code, out, errOut := run("-f", spec)
	if code != 0 || !strings.Contains(out, "docker-container:"+name+"/bundle  hostAddresses changed") || strings.Contains(out, name+"/agent") {
		t.Errorf("the apply after the host got an address: exit %d, want the bundle alone replaced for hostAddresses\n%s\n%s", code, out, errOut)
	}

	// A firewall reload that drops the rule: --verify says so (the bundle
	// knocks on the host past its proxy), and once the rule is back, not.
	restore := func() {
		onHost(t, c, addrs.BundleImage, true, "hostguard", "-install", "-pool", bottle.DefaultSubnetPool)
	}
	onHost(t, c, addrs.BundleImage, true, "hostguard", "-uninstall")
	t.Cleanup(restore)
	code, out, errOut = run("--verify", "-f", spec)
	if code != 1 || !strings.Contains(out+errOut, "the agent can reach the host through the bundle") {
		t.Errorf("--verify without the host guard's rule: exit %d, want 1 naming the missing rule\n%s\n%s", code, out, errOut)
	}
	restore()
	if code, out, errOut := run("--verify", "-f", spec); code != 0 {
		t.Errorf("--verify with the rule back: exit %d\n%s\n%s", code, out, errOut)
	}
}

// onHost runs image on the engine host's network until the test ends,
// with NET_ADMIN when admin is set; it returns the container's output
// once it exits when admin runs a command to the end.
func onHost(t *testing.T, c *client.Client, image string, admin bool, args ...string) string {
	t.Helper()
	// Not t.Context(): cleanups run it too, after that is done.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host := &container.HostConfig{NetworkMode: "host"}
	if admin {
		host.CapAdd = []string{"NET_ADMIN"}
	}
	name := testenv.Name("bottle-apply-test-onhost")
	created, err := c.ContainerCreate(ctx, &container.Config{Image: image, Cmd: args}, host, nil, nil, name)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = c.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	if !admin {
		return ""
	}
	waitc, errc := c.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitc:
		if w.StatusCode != 0 {
			t.Fatalf("%q on the host exited %d: %s", args, w.StatusCode, containerOutput(ctx, t, c, created.ID))
		}
	case err := <-errc:
		t.Fatal(err)
	}
	return containerOutput(ctx, t, c, created.ID)
}

func containerOutput(ctx context.Context, t *testing.T, c *client.Client, id string) string {
	t.Helper()
	rc, err := c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// engineHostAddrs are the IPv4 addresses of the engine's host, loopback
// and the tests' ranges aside, as busybox's ip lists them on the host's
// network.
func engineHostAddrs(t *testing.T, c *client.Client, busybox string) []string {
	t.Helper()
	out := onHost(t, c, busybox, true, "ip", "-o", "-4", "addr", "show")
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" {
				continue
			}
			p, err := netip.ParsePrefix(f[i+1])
			// The ranges of the tests' bottles and networks (10.213/16 to
			// 10.218/16, see testenv) come and go as other tests run.
			if err == nil && !p.Addr().IsLoopback() && !netip.MustParsePrefix("10.208.0.0/12").Contains(p.Addr()) {
				addrs = append(addrs, p.Addr().String())
			}
		}
	}
	if len(addrs) == 0 {
		t.Fatalf("the engine's host has no address but loopback and bottles':\n%s", out)
	}
	return addrs
}

// laterBridge makes a bridge network that is not a bottle's, from the
// test's own range, and returns its gateway: an address of the host.
func laterBridge(t *testing.T, c *client.Client) string {
	t.Helper()
	sub := testenv.NthSubnet(testenv.SubnetsHostGuard, 24, rand.IntN(250))
	p := netip.MustParsePrefix(sub)
	gw := p.Addr().Next().String()
	name := testenv.Name("bottle-apply-test-bridge")
	created, err := c.NetworkCreate(t.Context(), name, network.CreateOptions{Driver: "bridge",
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: sub, Gateway: gw}}}})
	if err != nil {
		t.Fatalf("create network %s (%s): %v", name, sub, err)
	}
	t.Cleanup(func() { _ = c.NetworkRemove(context.Background(), created.ID) })
	return gw
}

// laterHostAddr gives the host's loopback one more address, from the
// test's own range (the last /24 of it, which laterBridge never takes),
// until the test ends.
func laterHostAddr(t *testing.T, c *client.Client, busybox string) string {
	t.Helper()
	last := netip.MustParsePrefix(testenv.NthSubnet(testenv.SubnetsHostGuard, 24, 255)).Addr().As4()
	last[3] = byte(1 + rand.IntN(250))
	a := netip.AddrFrom4(last).String()
	onHost(t, c, busybox, true, "ip", "addr", "add", a+"/32", "dev", "lo")
	t.Cleanup(func() {
		ctx := context.Background()
		created, err := c.ContainerCreate(ctx, &container.Config{Image: busybox, Cmd: []string{"ip", "addr", "del", a + "/32", "dev", "lo"}},
			&container.HostConfig{NetworkMode: "host", CapAdd: []string{"NET_ADMIN"}, AutoRemove: true}, nil, nil, "")
		if err == nil {
			_ = c.ContainerStart(ctx, created.ID, container.StartOptions{})
			waitc, errc := c.ContainerWait(ctx, created.ID, container.WaitConditionRemoved)
			select {
			case <-waitc:
			case <-errc:
			}
		}
	})
	return a
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/bundle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/probe"
	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/verify"
)

// egressSpec is a bottle whose agent may reach allowed.test on ports 80
// and 443 and private.test on port 80 only, through the bundle's proxy,
// and resolve those names only; cidrs are its allowCIDRs.
func egressSpec(name, image string, cidrs ...string) string {
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
      allow:
        - allowed.test:80
        - allowed.test:443
        - private.test:80
`, name, image, strings.Join(cidrs, ", "))
}

// testServer runs the test's stand-in for the internet: a server on the
// bottle's egress network (the bundle's way out) under a DNS alias, which
// only the bundle can resolve and reach. It returns the server's address.
func testServer(t *testing.T, c *client.Client, image, bottleName, alias string) string {
	t.Helper()
	ctx := t.Context()
	name := "bottle-apply-test-" + testenv.Name(strings.TrimSuffix(alias, ".test"))
	net := bottle.ResourceName(bottleName, bottle.RoleEgress)
	created, err := c.ContainerCreate(ctx,
		&container.Config{Image: image, Cmd: []string{"-name", alias, "-http", "80,8080", "-dns", "53"}},
		&container.HostConfig{NetworkMode: container.NetworkMode(net)},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{net: {Aliases: []string{alias}}}},
		nil, name)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = c.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	insp, err := c.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	return insp.NetworkSettings.Networks[net].IPAddress
}

// hostListener listens on the host at addr for the life of the test and
// counts the connections it accepts.
func hostListener(t *testing.T, addr string) (port string, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	n := make(chan int, 1)
	n <- 0
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			n <- <-n + 1
			conn.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return port, func() int { v := <-n; n <- v; return v }
}

// hostAddrs are the host's own IPv4 addresses: where a server listening on
// 0.0.0.0 answers. The engine's bridges (br-*) are left out: other tests
// make and remove them as this one runs, and the bundles leave them to
// the host guard's rule (TestE2EHostNeverDialled tries one made later).
func hostAddrs(t *testing.T) []string {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ifc := range ifaces {
		if strings.HasPrefix(ifc.Name, "br-") {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue // gone meanwhile
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				out = append(out, n.IP.String())
			}
		}
	}
	return out
}

// bridgeGateways are the gateways of a network: the host's addresses on it.
func bridgeGateways(n network.Inspect) []string {
	var out []string
	for _, cfg := range n.IPAM.Config {
		if cfg.Gateway != "" {
			out = append(out, cfg.Gateway)
		}
	}
	return out
}

// runProbes copies the probe (the bottle-bundle build for the engine's
// architecture) into the bottle's agent where the self-test puts it
// (bottle-apply cp makes the missing directory), and runs checks there
// through bottle-apply exec.
func runProbes(t *testing.T, c *client.Client, bin, bottleName string, checks []probe.Check) []probe.Result {
	t.Helper()
	in, err := json.Marshal(checks)
	if err != nil {
		t.Fatal(err)
	}
	path := verify.ProbeDir + "/" + testenv.Name("probe")
	if code, out, errs := cli(t, bin, "", "cp", testenv.BundleBinary(t, runtime.GOARCH), bottleName+":"+path); code != 0 {
		t.Fatalf("cp the probe into the agent: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errOut := cli(t, bin, string(in), "exec", "-i", bottleName, "--", path, "probe", "-remove-self")
	var res []probe.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != len(checks) {
		t.Fatalf("probe exited %d: %v\nstdout: %s\nstderr: %s", code, err, out, errOut)
	}
	return res
}

// resolverDenial is what the engine's embedded resolver (127.0.0.11), the
// agent's, answers for a name the bundle's DNS daemon refuses. Up to Docker
// 23 (API 1.42) it relays the bundle's REFUSED. From Docker 24 (API 1.43)
// it takes an upstream's REFUSED as "try the next server" and answers
// SERVFAIL once none is left (moby e6258e6, "reply SERVFAIL if DNS
// forwarding fails"). Either way the name does not resolve; asked
// directly, the bundle still answers REFUSED.
func resolverDenial(t *testing.T, c *client.Client) (expect probe.Expect, got string) {
	t.Helper()
	v, err := c.ServerVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if versions.LessThan(v.APIVersion, "1.43") {
		return probe.ExpectRefused, ""
	}
	// The probe has no Expect for SERVFAIL alone: the row takes that rcode
	// and nothing else that fails (exact, in TestE2EEgressProbes).
	return probe.ExpectFails, "servfail"
}

// TestE2EEgressProbes applies a bottle with the egress proxy and the DNS
// daemon, starts stand-ins for allowed and denied hosts on its way out,
// and probes from inside its agent what it can and cannot reach.
func TestE2EEgressProbes(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	agentImage := testenv.AgentImage(t, c)
	serverImage := testenv.TestServerImage(t, c)
	dir := t.TempDir()

	// Two bottles: the second is the neighbour the first must not reach.
	name, other := testenv.Name("egress"), testenv.Name("egress")
	for _, n := range []string{name, other} {
		testenv.CleanupBottle(t, c, n)
		// The test servers sit on the bottle's egress network: they go
		// before the bottle does (CleanupBottle runs after them).
		if err := os.WriteFile(filepath.Join(dir, n+".yaml"), []byte(egressSpec(n, agentImage)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := cli(t, bin, "", "-f", dir)
	if code != 0 {
		t.Fatalf("apply exited %d\n%s\n%s", code, out, errOut)
	}
	// The apply tested both bottles itself.
	for _, n := range []string{name, other} {
		if !strings.Contains(out, "Verify "+n+": ") || !strings.Contains(out, "checks passed") {
			t.Fatalf("apply did not report a passing self-test of %s:\n%s", n, out)
		}
	}

	allowedIP := testServer(t, c, serverImage, name, "allowed.test")
	deniedIP := testServer(t, c, serverImage, name, "denied.test")
	testServer(t, c, serverImage, name, "private.test")
	ctx := t.Context()
	dp := docker.New(c, docker.Options{})
	addrs, err := dp.Addresses(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	// The stand-ins have private addresses, as a LAN's hosts do: a name
	// that resolves to one is reachable only inside allowCIDRs. The host
	// stays out even when a range holds it: the egress gateway, the
	// default bridge's, and every address of the host's own (a corporate
	// 10.0.0.0/8 or 172.16.0.0/12 holds them).
	bridge, err := c.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cidrs := []string{allowedIP + "/32"}
	for _, a := range append([]string{addrs.EgressGateway}, append(bridgeGateways(bridge), hostAddrs(t)...)...) {
		if a != "" && !slices.Contains(cidrs, a+"/32") {
			cidrs = append(cidrs, a+"/32")
		}
	}
	spec := egressSpec(name, agentImage, cidrs...)
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = cli(t, bin, "", "-f", filepath.Join(dir, name+".yaml"))
	if code != 0 || !strings.Contains(out, "allowCIDRs changed") || !strings.Contains(out, "checks passed") {
		t.Fatalf("apply with allowCIDRs exited %d\n%s\n%s", code, out, errOut)
	}
	if addrs, err = dp.Addresses(ctx, name); err != nil {
		t.Fatal(err)
	}
	otherAddrs, err := dp.Addresses(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	loopPort, loopAccepted := hostListener(t, "127.0.0.1:0")
	anyPort, anyAccepted := hostListener(t, "0.0.0.0:0")

	proxy := net.JoinHostPort(addrs.BundleIP, fmt.Sprint(bottle.ProxyPort))
	bundleDNS := net.JoinHostPort(addrs.BundleIP, "53")
	type row struct {
		name  string
		check probe.Check
	}
	denialExpect, denialGot := resolverDenial(t, c)
	// exact names the rows that accept one outcome only, of those their
	// check's Expect accepts.
	exact := map[string]string{"denied name through the agent's resolver": denialGot,
		// The bundle's own TLS alert, not a tunnel that was never opened.
		"a ClientHello for another name in a tunnel to an allowed name": "denied"}
	rows := []row{
		{"allowed name over CONNECT", probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: "allowed.test:80", Expect: probe.ExpectAllowed}},
		{"allowed name over plain HTTP", probe.Check{Kind: probe.KindProxyHTTP, Addr: proxy, Target: "http://allowed.test/", Expect: probe.ExpectAllowed}},
		{"denied name over CONNECT", probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: "denied.test:80", Expect: probe.ExpectDenied}},
		{"denied name over plain HTTP", probe.Check{Kind: probe.KindProxyHTTP, Addr: proxy, Target: "http://denied.test/", Expect: probe.ExpectDenied}},
		{"IP literal of the denied host", probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: deniedIP + ":80", Expect: probe.ExpectDenied}},
		{"IP literal inside allowCIDRs", probe.Check{Kind: probe.KindProxyHTTP, Addr: proxy, Target: "http://" + allowedIP + "/", Expect: probe.ExpectAllowed}},
		{"allowed name resolving to a private address outside allowCIDRs", probe.Check{Kind: probe.KindProxyHTTP, Addr: proxy, Target: "http://private.test/", Expect: probe.ExpectDenied}},
		{"the host's egress gateway, though allowCIDRs holds it", probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: net.JoinHostPort(addrs.EgressGateway, anyPort), Expect: probe.ExpectDenied}},
		{"IPv6 literal", probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: "[::1]:80", Expect: probe.ExpectDenied}},
		{"allowed name on a port not allowed", probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: "allowed.test:8080", Expect: probe.ExpectDenied}},
		{"allowed name on a port not allowed, plain HTTP", probe.Check{Kind: probe.KindProxyHTTP, Addr: proxy, Target: "http://allowed.test:8080/", Expect: probe.ExpectDenied}},
		{"the bundle itself through its proxy", probe.Check{Kind: probe.KindProxyHTTP, Addr: proxy, Target: "http://" + bottle.ResourceName(name, bottle.RoleBundle) + "/", Expect: probe.ExpectDenied}},
		{"direct to the allowed host", probe.Check{Kind: probe.KindTCP, Addr: allowedIP + ":80", Expect: probe.ExpectUnreachable}},
		{"direct to the denied host", probe.Check{Kind: probe.KindTCP, Addr: deniedIP + ":80", Expect: probe.ExpectUnreachable}},
		{"host loopback server", probe.Check{Kind: probe.KindTCP, Addr: "127.0.0.1:" + loopPort, Expect: probe.ExpectClosed}},
		{"bundle front port (sanity)", probe.Check{Kind: probe.KindTCP, Addr: proxy, Expect: probe.ExpectOpen}},
		{"bundle status port (internal)", probe.Check{Kind: probe.KindTCP, Addr: net.JoinHostPort(addrs.BundleIP, fmt.Sprint(bundle.StatusPort)), Expect: probe.ExpectClosed}},
		{"IPv6", probe.Check{Kind: probe.KindIPv6, Expect: probe.ExpectNone}},
		{"allowed name through the agent's resolver", probe.Check{Kind: probe.KindDNS, Target: "allowed.test", Expect: probe.ExpectResolves}},
		{"denied name through the agent's resolver", probe.Check{Kind: probe.KindDNS, Target: "denied.test", Expect: denialExpect}},
		{"denied name at the bundle's DNS", probe.Check{Kind: probe.KindDNS, Addr: bundleDNS, Target: "denied.test", Expect: probe.ExpectRefused}},
		{"TXT of an allowed name at the bundle's DNS", probe.Check{Kind: probe.KindDNS, Addr: bundleDNS, Target: "allowed.test", QType: "TXT", Expect: probe.ExpectRefused}},
		{"a ClientHello for another name in a tunnel to an allowed name", probe.Check{Kind: probe.KindProxyTLS, Addr: proxy, Target: "allowed.test:443", SNI: probe.VerifyHost, Expect: probe.ExpectDenied}},
		{"allowed name at the bundle's DNS", probe.Check{Kind: probe.KindDNS, Addr: bundleDNS, Target: "allowed.test", Expect: probe.ExpectResolves}},
		{"another resolver (a DNS server the test runs)", probe.Check{Kind: probe.KindDNS, Addr: deniedIP + ":53", Target: "allowed.test", Expect: probe.ExpectUnreachable}},
		{"the other bottle's bundle", probe.Check{Kind: probe.KindTCP, Addr: net.JoinHostPort(otherAddrs.BundleIP, fmt.Sprint(bottle.ProxyPort)), Expect: probe.ExpectUnreachable}},
		{"the other bottle's agent", probe.Check{Kind: probe.KindTCP, Addr: net.JoinHostPort(otherAddrs.AgentIP, "22"), Expect: probe.ExpectUnreachable}},
		{"the other bottle's bundle's DNS", probe.Check{Kind: probe.KindDNS, Addr: net.JoinHostPort(otherAddrs.BundleIP, "53"), Target: "allowed.test", Expect: probe.ExpectUnreachable}},
	}
	// A server on the host at 0.0.0.0, through every address the host
	// has: the gateways of the bottle's networks, the default bridge's,
	// and the host's own.
	gateways := append([]string{addrs.InternalGateway, addrs.EgressGateway}, bridgeGateways(bridge)...)
	seen := map[string]bool{"": true}
	for _, a := range append(gateways, hostAddrs(t)...) {
		if seen[a] {
			continue
		}
		seen[a] = true
		rows = append(rows,
			row{"host server on 0.0.0.0 via " + a, probe.Check{Kind: probe.KindTCP, Addr: net.JoinHostPort(a, anyPort), Expect: probe.ExpectUnreachable}},
			row{"host resolver via " + a, probe.Check{Kind: probe.KindDNS, Addr: net.JoinHostPort(a, "53"), Target: "allowed.test", Expect: probe.ExpectUnreachable}},
			row{"host server on 0.0.0.0 via the proxy to " + a, probe.Check{Kind: probe.KindProxyConnect, Addr: proxy, Target: net.JoinHostPort(a, anyPort), Expect: probe.ExpectDenied}})
	}
	checks := make([]probe.Check, len(rows))
	for i, r := range rows {
		checks[i] = r.check
		checks[i].Name = r.name
		checks[i].Hole = "hole: " + r.name
	}
	results := runProbes(t, c, bin, name, checks)
	var table strings.Builder
	for i, r := range results {
		want, ok := string(r.Expect), r.OK
		if g := exact[rows[i].name]; g != "" {
			want, ok = g, ok && r.Got == g
		}
		fmt.Fprintf(&table, "| %s | %s | %s | %s | %s | %s |\n", rows[i].name, r.Kind, strings.Trim(checks[i].Addr+" "+checks[i].Target, " "), want, r.Got, map[bool]string{true: "ok", false: "FAIL"}[ok])
		if !ok {
			t.Errorf("%s: got %s, want %s (%s)", rows[i].name, r.Got, want, r.Detail)
		}
	}
	t.Logf("probe table:\n| probe | kind | address / target | want | got | |\n|---|---|---|---|---|---|\n%s", table.String())
	if n := loopAccepted() + anyAccepted(); n != 0 {
		t.Errorf("the host's listeners accepted %d connections from the agent", n)
	}

	// Every decision is in the bundle's log, which `logs` prints.
	code, out, errOut = cli(t, bin, "", "logs", "-o", "json", name)
	if code != 0 {
		t.Fatalf("logs exited %d: %s", code, errOut)
	}
	var decisions []bundle.Decision
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		d, ok := bundle.ParseDecision([]byte(line))
		if !ok {
			t.Fatalf("logs -o json printed a line that is not a decision: %q", line)
		}
		decisions = append(decisions, d)
	}
	for _, want := range []struct {
		daemon, decision, host, method string
		port                           int
	}{
		{"egress", "allow", "allowed.test", "CONNECT", 80},
		{"egress", "allow", "allowed.test", "GET", 80},
		{"egress", "deny", "denied.test", "CONNECT", 80},
		{"egress", "deny", "denied.test", "GET", 80},
		{"egress", "deny", deniedIP, "CONNECT", 80},
		{"egress", "deny", "allowed.test", "CONNECT", 8080},
		{"egress", "deny", "allowed.test", "CONNECT", 443}, // the ClientHello for another name
		{"egress", "deny", "private.test", "GET", 80},
		{"egress", "allow", allowedIP, "GET", 80},
		{"dns", "allow", "allowed.test", "", 0},
		{"dns", "deny", "denied.test", "", 0},
	} {
		found := false
		for _, d := range decisions {
			if d.Daemon == want.daemon && d.Decision == want.decision && d.Host == want.host && d.Port == want.port &&
				(want.method == "" || d.Method == want.method) && (d.Allowed() == (d.Rule != "")) {
				found = true
			}
		}
		if !found {
			t.Errorf("no decision %+v in the log:\n%s", want, out)
		}
	}
	code, out, _ = cli(t, bin, "", "logs", "--denied", name)
	if code != 0 || !strings.Contains(out, "deny   egress  CONNECT denied.test:80") || !strings.Contains(out, "deny   egress  CONNECT [::1]:80") ||
		regexp.MustCompile(`(?m)^\S+  allow `).MatchString(out) {
		t.Errorf("logs --denied exited %d:\n%s", code, out)
	}

	// A hole is found and named: the agent joined by hand to the default
	// bridge reaches the host.
	agentID := containerID(t, c, bottle.ResourceName(name, bottle.RoleAgent))
	if err := c.NetworkConnect(ctx, "bridge", agentID, nil); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = cli(t, bin, "", "-f", filepath.Join(dir, name+".yaml"), "--verify")
	if code != 1 || !strings.Contains(errOut, "hole") || !strings.Contains(out, "FAILED") || !strings.Contains(out, "host") {
		t.Errorf("--verify with the agent on the default bridge exited %d, want 1 naming the hole\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// The next apply replaces the agent and verifies it again.
	code, out, errOut = cli(t, bin, "", "-f", filepath.Join(dir, name+".yaml"))
	if code != 0 || !strings.Contains(out, "checks passed") {
		t.Errorf("apply after the hole exited %d\n%s\n%s", code, out, errOut)
	}
}

// TestE2EEgressExample applies examples/egress.yaml as shipped (renamed):
// the apply's self-test passes and is in the JSON result, a second apply
// changes and tests nothing, --verify tests on demand, destroy cleans up.
func TestE2EEgressExample(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "egress.yaml", img)

	code, out, errs := cli(t, bin, "", "-f", path, "-o", "json")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	var doc struct {
		Changed bool            `json:"changed"`
		Verify  []verify.Report `json:"verify"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if !doc.Changed || len(doc.Verify) != 1 || doc.Verify[0].Bottle != name || !doc.Verify[0].OK || len(doc.Verify[0].Results) < 10 {
		t.Fatalf("apply's self-test: %+v", doc.Verify)
	}
	kinds := map[probe.Kind]int{}
	for _, r := range doc.Verify[0].Results {
		kinds[r.Kind]++
		if !r.OK {
			t.Errorf("check failed: %+v", r)
		}
	}
	if kinds[probe.KindProxyConnect] < 3 || kinds[probe.KindTCP] < 3 || kinds[probe.KindDNS] < 2 || kinds[probe.KindIPv6] != 1 {
		t.Errorf("the self-test lacks kinds of checks: %v", kinds)
	}

	// Nothing changed: nothing to test again, and no exec in the agent.
	code, out, _ = cli(t, bin, "", "-f", path)
	if code != 0 || !strings.HasPrefix(out, "No changes.") || strings.Contains(out, "Verify") {
		t.Fatalf("second apply: exit %d\n%s", code, out)
	}
	// logs -f follows: a decision made after it started shows up, and
	// Ctrl-C ends it with exit 0.
	follow := exec.CommandContext(t.Context(), bin, "logs", "-f", "-o", "json", name)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// New decisions, made while it follows.
	code, out, errs = cli(t, bin, "", "-f", path, "--verify")
	if code != 0 || !strings.Contains(out, "Verify "+name+": ") || !strings.Contains(out, "checks passed") {
		t.Fatalf("--verify: exit %d\n%s\n%s", code, out, errs)
	}
	seen, deadline := 0, time.After(30*time.Second)
	for seen < 2*2 { // the apply's self-test and --verify each make two egress denials of VerifyHost
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("logs -f ended early after %d decisions", seen)
			}
			if d, ok := bundle.ParseDecision([]byte(l)); ok && d.Host == probe.VerifyHost && d.Daemon == "egress" {
				seen++
			}
		case <-deadline:
			t.Fatalf("logs -f printed %d of 4 decisions for %s in 30 s", seen, probe.VerifyHost)
		}
	}
	if err := follow.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := follow.Wait(); err != nil {
		t.Errorf("logs -f after Ctrl-C: %v, want exit 0", err)
	}
	// The self-test's denials are in the decision log.
	code, out, _ = cli(t, bin, "", "logs", "--denied", name)
	if code != 0 || !strings.Contains(out, probe.VerifyHost) {
		t.Errorf("logs --denied: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, bin, "", "-f", path, "--destroy")
	if code != 0 {
		t.Fatalf("destroy: exit %d\n%s", code, out)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("left after destroy: %q", left)
	}
}

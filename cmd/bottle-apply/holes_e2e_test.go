package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// holeySpec is a bottle of the bundle image given, with the rules the
// self-test needs to try every hole: an exact rule on 443 (fronting), a
// wildcard (DNS as a channel), and allowCIDRs over the host.
func holeySpec(name, agent, bundle, egressSubnet string, cidrs []string) string {
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
    egressSubnet: %s
    allowCIDRs: [%s]
  bundle:
    image: %s
    daemons: [egress, dns]
    egress:
      allow: [allowed.test:443, "*.allowed.test:80"]
`, name, agent, egressSubnet, strings.Join(cidrs, ", "), bundle)
}

// TestE2EVerifyFindsEachHole opens on purpose, in a test build of the
// bundle, each hole issue 12 closed, and checks that bottle-apply --verify
// fails naming every one; the same bottle with a test build that opens
// none passes. The build tag that opens holes exists only in tests
// (bundle/holes.go).
func TestE2EVerifyFindsEachHole(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	agentImage := testenv.AgentImage(t, c)
	serverImage := testenv.TestServerImage(t, c)
	ctx := t.Context()

	// The bundle's DNS upstream is the test's server on its egress network,
	// so that a query the hole lets through goes nowhere else.
	egress := netip.MustParsePrefix(testenv.NthSubnet(testenv.SubnetsHostGuard, 28, 16*254+rand.IntN(16)))
	upstream := egress.Addr().Next().Next().Next().Next() // .4: the engine gives out .2 and .3 first
	env := "BOTTLE_DNS_UPSTREAM=" + netip.AddrPortFrom(upstream, 53).String()
	holey := testenv.HoleyBundleImage(t, c, "host,sni,dns-types", env)
	closed := testenv.HoleyBundleImage(t, c, "", env)

	cidrs := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
	for _, a := range engineHostAddrs(t, c, agentImage) {
		cidrs = append(cidrs, a+"/32")
	}
	name := testenv.Name("holes")
	testenv.CleanupBottle(t, c, name)
	path := filepath.Join(t.TempDir(), name+".yaml")
	write := func(bundleImage string) {
		if err := os.WriteFile(path, []byte(holeySpec(name, agentImage, bundleImage, egress.String(), cidrs)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(holey)
	if code, out, errOut := cli(t, bin, "", "--no-verify", "-f", path); code != 0 {
		t.Fatalf("apply exited %d\n%s\n%s", code, out, errOut)
	}
	// allowed.test, and the DNS upstream, on the bundle's way out.
	netName := bottle.ResourceName(name, bottle.RoleEgress)
	srv, err := c.ContainerCreate(ctx, &container.Config{Image: serverImage, Cmd: []string{"-name", "allowed.test", "-http", "80", "-dns", "53"}},
		&container.HostConfig{NetworkMode: container.NetworkMode(netName)},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netName: {
			Aliases: []string{"allowed.test"}, IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: upstream.String()}}}},
		nil, testenv.Name("bottle-apply-test-upstream"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.ContainerRemove(context.Background(), srv.ID, container.RemoveOptions{Force: true}) })
	if err := c.ContainerStart(ctx, srv.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := cli(t, bin, "", "--verify", "-f", path)
	if code == 0 {
		t.Fatalf("--verify passed a bundle with every hole open:\n%s\n%s", out, errOut)
	}
	report := out + errOut
	for _, hole := range []string{
		"the egress proxy connects to the host's own address",
		"SNI is not its CONNECT host",
		"forwards TXT queries under a wildcard rule",
		"labels longer than the limit",
	} {
		if !strings.Contains(report, hole) {
			t.Errorf("--verify did not name the hole %q:\n%s", hole, report)
		}
	}

	// The same bottle, with a test build that opens nothing, passes.
	write(closed)
	if code, out, errOut := cli(t, bin, "", "-f", path); code != 0 || !strings.Contains(out, "checks passed") {
		t.Fatalf("apply of the bundle with no hole exited %d\n%s\n%s", code, out, errOut)
	}
}

package bundle

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// The address policy of a dial, without any network: what a name may
// resolve to, and what an address may be, with the host's addresses and
// allowCIDRs.
func TestCheckDial(t *testing.T) {
	t.Parallel()
	p, self := policyForTest(t) // allowCIDRs hold 10.1.0.0/16; the host is 10.1.2.1 and fd00:1::1
	tests := []struct {
		addr  string
		named bool
		kind  string // "" when allowed
		never bool
	}{
		// The host: never, by name or literal, inside allowCIDRs or not.
		{"10.1.2.1:443", true, hostAddrKind, true},
		{"10.1.2.1:443", false, hostAddrKind, true},
		{"[::ffff:10.1.2.1]:443", true, hostAddrKind, true},
		{"[fd00:1::1]:443", true, hostAddrKind, true},
		{"10.1.0.1:443", true, gatewayKind, true}, // testdata/proc-net
		{"[2001:db8::1:1]:22", false, gatewayKind, true},
		// A name leads to a private or shared address only inside
		// allowCIDRs.
		{"10.1.3.4:443", true, "", false},
		{"10.2.0.1:443", true, "a private address outside spec.network.allowCIDRs", false},
		{"172.17.0.1:443", true, "a private address outside spec.network.allowCIDRs", false},
		{"192.168.1.1:443", true, "a private address outside spec.network.allowCIDRs", false},
		{"[::ffff:192.168.1.1]:443", true, "a private address outside spec.network.allowCIDRs", false},
		{"100.64.0.1:443", true, "a shared (carrier-grade NAT) address outside spec.network.allowCIDRs", false},
		{"198.19.255.255:443", true, "a benchmarking address outside spec.network.allowCIDRs", false},
		{"[fd12::1]:443", true, "a private address outside spec.network.allowCIDRs", false},
		{"[fc00::1]:443", true, "a private address outside spec.network.allowCIDRs", false},
		// Public addresses, as before.
		{"93.184.215.14:443", true, "", false},
		{"[2606:4700::1]:443", true, "", false},
		{"172.32.0.1:443", true, "", false},
		{"100.128.0.1:443", true, "", false},
		// Literals passed allowCIDRs already (decideTarget).
		{"10.2.0.1:443", false, "", false},
		// The rest of the policy still applies.
		{"127.0.0.1:443", true, "a loopback address", true},
		{"10.1.2.2:22", true, "an address of the bundle itself", true},
		{"10.1.2.2:8888", true, "the egress proxy itself", true},
	}
	for _, tt := range tests {
		kind, never := p.checkDial(netip.MustParseAddrPort(tt.addr), tt.named, self)
		if kind != tt.kind || (kind != "" && never != tt.never) {
			t.Errorf("checkDial(%s, named %v) = %q, never %v; want %q, never %v", tt.addr, tt.named, kind, never, tt.kind, tt.never)
		}
	}
}

// A name that resolves to one of the host's addresses is refused, even
// when allowCIDRs holds it; so is the address itself. Nothing is dialled.
func TestEgressHostAddrs(t *testing.T) {
	t.Parallel()
	b, _, never := startBlocking(t, map[string]string{"host.test": "127.0.0.1", "both.test": "::1,127.0.0.1"}, func(c *Config) {
		c.HostAddrs = []string{"127.0.0.1", "::1"}
	})
	port := strconv.Itoa(never.port)
	tests := []blockedCase{
		{"CONNECT", "host.test:" + port, "denied CONNECT host.test:" + port + ": host.test resolves to 127.0.0.1, the host's address on the bottle's networks; the proxy never connects there"},
		{"GET", "http://host.test:" + port + "/", "host.test resolves to 127.0.0.1, the host's address on the bottle's networks"},
		{"CONNECT", "both.test:" + port, "both.test resolves to ::1, the host's address on the bottle's networks"},
		{"CONNECT", "127.0.0.1:" + port, "denied CONNECT 127.0.0.1:" + port + ": 127.0.0.1 is the host's address on the bottle's networks; the proxy never connects there"},
	}
	ds := expectBlocked(t, b, never, tests)
	for i, d := range ds {
		if d.Decision != "deny" || !strings.Contains(d.Reason, "the host's address on the bottle's networks") {
			t.Errorf("decision %d = %+v, want a denial naming the host's address", i, d)
		}
	}
}

// DNS rebinding: an allowed name that resolves to a private or shared
// address is dialled only when allowCIDRs holds that address. (The test
// policy then refuses anything but loopback, which shows the name got past
// the private-address check.)
func TestEgressPrivateNames(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	port := strconv.Itoa(echo.port)
	res := newResolver(map[string]string{
		"other.test": "10.1.2.3", "docker0.test": "172.17.0.1", "lan.test": "192.168.1.10",
		"cgnat.test": "100.64.0.1", "bench.test": "198.18.0.1", "ula.test": "fd00::7", "mapped.test": "::ffff:192.168.1.10",
		"inside.test": "10.9.0.1", "public.test": "93.184.215.14", "mixed.test": "192.168.1.10,127.0.0.1",
	})
	cfg := baseConfig(res, "*.test:*")
	cfg.AllowCIDRs = []string{"10.9.0.0/16"}
	b := startBundle(t, cfg)
	denied := []struct {
		host, short, body string
	}{
		{"other.test", deniedAddress, "other.test resolves to 10.1.2.3, a private address outside spec.network.allowCIDRs\n"},
		{"docker0.test", deniedAddress, "docker0.test resolves to 172.17.0.1, a private address outside spec.network.allowCIDRs"},
		{"lan.test", deniedAddress, "lan.test resolves to 192.168.1.10, a private address outside"},
		{"mapped.test", deniedAddress, "mapped.test resolves to 192.168.1.10, a private address outside"},
		{"cgnat.test", deniedAddress, "cgnat.test resolves to 100.64.0.1, a shared (carrier-grade NAT) address outside"},
		{"bench.test", deniedAddress, "bench.test resolves to 198.18.0.1, a benchmarking address outside"},
		{"ula.test", deniedAddress, "ula.test resolves to fd00::7, a private address outside"},
		// Past the private check, into the test policy.
		{"inside.test", deniedBlocked, "inside.test resolves to 10.9.0.1, not 127.0.0.1 or ::1 (test policy)"},
		{"public.test", deniedBlocked, "public.test resolves to 93.184.215.14, not 127.0.0.1 or ::1 (test policy)"},
	}
	for _, tt := range denied {
		for _, method := range []string{"CONNECT", "GET"} {
			target := tt.host + ":" + port
			if method == "GET" {
				target = "http://" + target + "/"
			}
			resp, body := dialProxy(t, b.proxy).do(t, method, target, "")
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) != tt.short || !strings.Contains(body, tt.body) {
				t.Errorf("%s %s = %s (%s) %q; want 403 %s containing %q", method, target, resp.Status, resp.Header.Get(DeniedHeader), body, tt.short, tt.body)
			}
		}
	}
	if n := echo.accepts.Load(); n != 0 {
		t.Fatalf("upstream accepts = %d, want 0", n)
	}
	// A private address among a name's addresses is skipped.
	c := dialProxy(t, b.proxy)
	if resp, _ := c.do(t, "CONNECT", "mixed.test:"+port, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT mixed.test = %s", resp.Status)
	}
	c.echo(t, "past the private address")
	if n := echo.accepts.Load(); n != 1 {
		t.Fatalf("upstream accepts = %d, want 1", n)
	}
	ds := b.log.decisions()
	if len(ds) != 2*len(denied)+1 {
		t.Fatalf("%d decision lines, want %d:\n%s", len(ds), 2*len(denied)+1, b.log)
	}
	if d := ds[0]; d.Decision != "deny" || d.Reason != "other.test resolves to 10.1.2.3, a private address outside spec.network.allowCIDRs" {
		t.Errorf("decision = %+v", d)
	}
}

// The engine's host and the bottles' subnets are refused whatever
// allowCIDRs and names say (issue 12, holes 1, 2 and 6): a range of
// BOTTLE_DENY_CIDRS or an address of the host answers 403 at once, on any
// port, open or closed, and nothing is dialled. The bundle's own egress
// subnet stays reachable, as allowCIDRs says.
func TestEgressDeniedRanges(t *testing.T) {
	t.Parallel()
	b, _, never := startBlocking(t, map[string]string{"lan.test": "127.0.0.9", "pool.test": "127.0.5.5", "up.test": "127.0.0.1"}, func(c *Config) {
		c.DenyCIDRs = []string{"127.0.0.0/8", "127.0.0.9/32", "127.0.0.2/32"}
		c.EgressSubnet = "127.0.0.0/28"
	})
	port := strconv.Itoa(never.port)
	closed := "1" // a port nothing listens on: refused the same way
	tests := []blockedCase{
		{"CONNECT", "127.0.0.17:" + port, "127.0.0.17 is inside 127.0.0.0/8, the bottles' subnets; the proxy never connects there"},
		{"CONNECT", "127.0.0.17:" + closed, "127.0.0.17 is inside 127.0.0.0/8, the bottles' subnets"},
		{"CONNECT", "127.0.0.9:" + port, "127.0.0.9 is an address of the engine's host"},
		{"CONNECT", "127.0.0.2:" + port, "127.0.0.2 is an address of the engine's host"}, // inside the egress subnet
		{"GET", "http://lan.test:" + port + "/", "lan.test resolves to 127.0.0.9, an address of the engine's host"},
		{"CONNECT", "pool.test:" + port, "pool.test resolves to 127.0.5.5, inside 127.0.0.0/8, the bottles' subnets"},
	}
	expectBlocked(t, b, never, tests)

	// The egress subnet is the exception: allowCIDRs holds it, so it is
	// dialled.
	resp, body := dialProxy(t, b.proxy).do(t, "CONNECT", "up.test:"+port, "")
	if resp.StatusCode != http.StatusOK || never.accepts.Load() != 1 {
		t.Fatalf("CONNECT up.test (inside the egress subnet) = %s %q, %d dials; want it dialled", resp.Status, body, never.accepts.Load())
	}
}

package probe

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// VerifyHost is the name the standard checks ask the proxy and the DNS
// daemon for. No rule can allow it usefully: .invalid never resolves
// (RFC 6761), so a proxy or resolver that lets it through has not checked
// the allowlist, and no traffic leaves for it.
const VerifyHost = "bottle-apply-verify.invalid"

// docAddrs are IPv4 addresses of the documentation ranges 192.0.2.0/24,
// 198.51.100.0/24 and 203.0.113.0/24 (RFC 5737), tried in order for the
// proxy's IP literal check.
var docAddrs = []string{
	"192.0.2.1", "198.51.100.1", "203.0.113.1",
	"192.0.2.254", "198.51.100.254", "203.0.113.254",
}

// Target is what Standard needs to know of one bottle.
type Target struct {
	// BundleIP is the bundle's address on the bottle's internal network.
	BundleIP string
	// ProxyPort is the egress proxy's front port (8888).
	ProxyPort int
	// DNSPort is the DNS daemon's port; 0 is bottle.DNSPort.
	DNSPort int
	// InternalPorts are the bundle's ports bound to its loopback only,
	// such as the status port 9901.
	InternalPorts []int
	// Daemons are spec.bundle.daemons: egress, dns.
	Daemons []string
	// Allow is spec.bundle.egress.allow, in spec syntax.
	Allow []string
	// AllowCIDRs is spec.network.allowCIDRs.
	AllowCIDRs []string
	// HostAddrs are the addresses by which the host may be reached from
	// the bottle's networks: their gateways.
	HostAddrs []string
	// HostInterfaceAddrs are every address of the engine's host: docker0,
	// every bridge's gateway, its LAN and public addresses. Empty when
	// the provider cannot tell; the checks through them are left out.
	HostInterfaceAddrs []string
	// Listening are host:port of services that listen where a confined
	// agent must never connect (on a cluster: each node's kubelet, the
	// API server): tried directly, where a connection is the hole and a
	// refusal is not (a NetworkPolicy may reject rather than drop), and
	// through the egress proxy, which must deny them.
	Listening []string
	// DNSMaxLabelLength is spec.bundle.egress.dns.maxLabelLength; 0 is
	// spec.DefaultDNSMaxLabelLength.
	DNSMaxLabelLength int
	// Nonce makes the names looked up under a wildcard rule new at each
	// run, so that no cache answers for a hole (lower-case letters and
	// digits; "" leaves it out).
	Nonce string
	// Credentialed are the hosts of spec.bundle.egress.credentials: the
	// bundle intercepts these, and no other. Empty leaves the
	// interception checks out.
	Credentialed []string
	// CA is the bottle's CA certificate (PEM), which the bundle issues
	// the credentialed hosts' certificates with; needed with
	// Credentialed. It goes into the checks, so that the probe verifies
	// against what bottle-apply holds, never against a file in the agent.
	CA []byte
}

// maxHostChecks bounds the host's addresses tried, each directly and
// through the proxy.
const maxHostChecks = 8

// hostPort is the port the host's addresses are tried on (discard): a
// host that answers on it, even with a reset, has been reached.
const hostPort = 9

// dnsPort is where a resolver on the host would answer, whatever port the
// bundle's own DNS daemon has.
const dnsPort = 53

// Bounds of the interception checks: the credentialed hosts tried, and
// the other exact hosts. Each is one handshake, all run at once; the
// bundle answers those it intercepts itself, and the others are bounded
// by Options.InterceptTimeout.
const (
	maxInterceptChecks    = 4
	maxNotInterceptChecks = 2
)

// Standard returns the checks that verify one bottle's isolation:
//
//   - with the egress daemon, the proxy's front port is open and the proxy
//     denies a CONNECT and a plain GET to VerifyHost, a CONNECT to a
//     documentation IP address outside AllowCIDRs, and a CONNECT to a port
//     the first non-wildcard rule with limited ports does not allow; the
//     proxy refuses all of these before it resolves or dials anything;
//   - with the egress daemon and a rule that allows a name on port 443,
//     the proxy refuses a tunnel there that carries a TLS ClientHello for
//     VerifyHost, with its own TLS alert and before it dials (domain
//     fronting);
//   - with the egress daemon, the proxy denies a CONNECT to the host's
//     own addresses (the gateways and up to 8 of HostInterfaceAddrs,
//     those inside AllowCIDRs first), before it dials: a 502 means it
//     dialled;
//   - with the egress daemon and credentialed hosts, a TLS handshake
//     through the proxy with each of the first 4 credentialed hosts, on
//     443 (or the first port a /tls rule gives it), gets a certificate of
//     the bottle's CA; one with each of the first 2 other exact hosts
//     allowed on 443, and with a name under a wildcard rule (one under a
//     credentialed host first: the CA's name constraints would let a
//     certificate for it pass), gets none;
//   - with the dns daemon, the daemon gives no address for VerifyHost;
//     under the first wildcard rule, it refuses a TXT query and a name
//     whose label is one character longer than DNSMaxLabelLength;
//   - each internal port of the bundle is closed to the agent;
//   - each host address answers nothing: no TCP reset on port 9, no DNS
//     answer nor ICMP error on port 53 (the gateways); no TCP reset on
//     port 9 (the other interface addresses);
//   - the agent has no IPv6.
//
// It fails only on a malformed Target, such as one built from an
// unvalidated spec.
func Standard(t Target) ([]Check, error) {
	bundle, err := netip.ParseAddr(t.BundleIP)
	if err != nil || !bundle.Is4() {
		// Bottles are IPv4 only, and the last check wants no IPv6.
		return nil, fmt.Errorf("bundle IP %q is not an IPv4 address", t.BundleIP)
	}
	rules, err := spec.ParseEgressRules(t.Allow)
	if err != nil {
		return nil, fmt.Errorf("egress rules: %w", err)
	}
	cidrs := make([]netip.Prefix, 0, len(t.AllowCIDRs))
	for _, s := range t.AllowCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("allowCIDRs: %q is not a CIDR", s)
		}
		cidrs = append(cidrs, p)
	}
	hosts := make([]netip.Addr, 0, len(t.HostAddrs))
	for _, s := range t.HostAddrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("host address %q is not an IP address", s)
		}
		if !slices.Contains(hosts, a) {
			hosts = append(hosts, a)
		}
	}
	ifaces := make([]netip.Addr, 0, len(t.HostInterfaceAddrs))
	for _, s := range t.HostInterfaceAddrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("host interface address %q is not an IP address", s)
		}
		ifaces = append(ifaces, a.Unmap())
	}
	// Through the proxy: the gateways too, which the host holds.
	viaProxy := pickHostAddrs(append(slices.Clone(hosts), ifaces...), cidrs)
	ifaces = pickHostAddrs(ifaces, cidrs)
	if t.Nonce != "" && !nonceRE.MatchString(t.Nonce) {
		return nil, fmt.Errorf("nonce %q is not 1 to 16 lower-case letters and digits", t.Nonce)
	}
	maxLabel := t.DNSMaxLabelLength
	if maxLabel == 0 {
		maxLabel = spec.DefaultDNSMaxLabelLength
	}
	at := func(a netip.Addr, port int) string { return netip.AddrPortFrom(a, uint16(port)).String() }

	var checks []Check
	if slices.Contains(t.Daemons, spec.DaemonEgress) {
		if !validPort(t.ProxyPort) {
			return nil, fmt.Errorf("proxy port %d is not a port", t.ProxyPort)
		}
		proxy := at(bundle, t.ProxyPort)
		checks = append(checks,
			Check{
				Name: "the egress proxy at " + proxy,
				Hole: "the agent cannot reach its egress proxy, so allowed egress fails too: the bundle is down or its proxy does not listen",
				Kind: KindTCP, Addr: proxy, Expect: ExpectOpen,
			},
			Check{
				Name: "a CONNECT through the egress proxy to " + VerifyHost + ":443, a name no rule allows",
				Hole: "the egress proxy opens tunnels to hosts no rule allows",
				Kind: KindProxyConnect, Addr: proxy, Target: VerifyHost + ":443", Expect: ExpectDenied,
			},
			Check{
				Name: "a plain HTTP GET through the egress proxy of http://" + VerifyHost + "/, a name no rule allows",
				Hole: "the egress proxy forwards plain HTTP to hosts no rule allows",
				Kind: KindProxyHTTP, Addr: proxy, Target: "http://" + VerifyHost + "/", Expect: ExpectDenied,
			})
		if ip, ok := uncovered(cidrs); ok {
			target := net.JoinHostPort(ip, "443")
			checks = append(checks, Check{
				Name: "a CONNECT through the egress proxy to " + target + ", an IP address outside network.allowCIDRs",
				Hole: "the egress proxy opens tunnels to IP addresses outside network.allowCIDRs",
				Kind: KindProxyConnect, Addr: proxy, Target: target, Expect: ExpectDenied,
			})
		}
		if r, port, ok := deniedPort(rules); ok {
			target := net.JoinHostPort(r.Host, strconv.Itoa(port))
			checks = append(checks, Check{
				Name: "a CONNECT through the egress proxy to " + target + ", a port the rule " + r.String() + " does not allow",
				Hole: "the egress proxy lets an allowed host through on ports its rules do not allow",
				Kind: KindProxyConnect, Addr: proxy, Target: target, Expect: ExpectDenied,
			})
		}
		if host, r, ok := tlsHost(rules); ok {
			target := net.JoinHostPort(host, "443")
			checks = append(checks, Check{
				Name: "a CONNECT through the egress proxy to " + target + " (the rule " + r.String() + " allows it) carrying a TLS ClientHello for " + VerifyHost,
				Hole: "the egress proxy opens a TLS tunnel whose SNI is not its CONNECT host (domain fronting)",
				Kind: KindProxyTLS, Addr: proxy, Target: target, SNI: VerifyHost, Expect: ExpectDenied,
			})
		}
		ic, err := interceptChecks(t, rules, proxy, maxLabel)
		if err != nil {
			return nil, err
		}
		checks = append(checks, ic...)
		for _, h := range viaProxy {
			target := at(h, hostPort)
			name := "a CONNECT through the egress proxy to " + target + ", an address of the host"
			hole := "the egress proxy connects to the host's own address " + h.String() + ": the agent can reach the host's services"
			if covered(cidrs, h) {
				name += " inside network.allowCIDRs"
				hole = "the egress proxy connects to the host's own address " + h.String() + ", which allowCIDRs covers: the agent can reach the host's services"
			}
			checks = append(checks, Check{Name: name, Hole: hole, Kind: KindProxyConnect, Addr: proxy, Target: target, Expect: ExpectDenied})
		}
	}
	if slices.Contains(t.Daemons, spec.DaemonDNS) {
		port := t.DNSPort
		if port == 0 {
			port = bottle.DNSPort
		}
		if !validPort(port) {
			return nil, fmt.Errorf("DNS port %d is not a port", t.DNSPort)
		}
		addr := at(bundle, port)
		checks = append(checks, Check{
			Name: "a DNS query for " + VerifyHost + " to the bundle's DNS daemon at " + addr + ", a name no rule allows",
			Hole: "the bundle's DNS daemon resolves names no rule allows",
			Kind: KindDNS, Addr: addr, Target: VerifyHost, Expect: ExpectRefused,
		})
		if i := slices.IndexFunc(rules, func(r spec.EgressRule) bool { return r.Wildcard }); i >= 0 {
			r := rules[i]
			label := "verify"
			if t.Nonce != "" {
				label += "-" + t.Nonce
			}
			// Within the label limit, so that only the type is refused.
			label = label[:min(len(label), maxLabel)]
			name := label + "." + r.Host
			checks = append(checks, Check{
				Name: "a TXT query for " + name + " to the bundle's DNS daemon at " + addr + ", under the rule " + r.String(),
				Hole: "the bundle's DNS daemon forwards TXT queries under a wildcard rule (a data channel)",
				Kind: KindDNS, Addr: addr, Target: name, QType: "TXT", Expect: ExpectRefused,
			})
			if maxLabel < spec.MaxLabelLen {
				long := (label + "-" + strings.Repeat("x", spec.MaxLabelLen))[:maxLabel+1]
				if strings.HasSuffix(long, "-") {
					long = long[:len(long)-1] + "x"
				}
				name := long + "." + r.Host
				checks = append(checks, Check{
					Name: fmt.Sprintf("a DNS query for a name under the rule %s whose first label has %d characters, one more than allowed", r.String(), len(long)),
					Hole: "the bundle's DNS daemon forwards names with labels longer than the limit under a wildcard rule (a data channel)",
					Kind: KindDNS, Addr: addr, Target: name, Expect: ExpectRefused,
				})
			}
		}
	}
	for _, l := range t.Listening {
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			return nil, fmt.Errorf("listening service %q is not an address and port", l)
		}
		checks = append(checks, Check{
			Name: "a service the agent must never reach, at " + ap.String(),
			Hole: "the agent connects to " + ap.String() + ", which its network policy forbids",
			Kind: KindTCP, Addr: ap.String(), Expect: ExpectClosed,
		})
		if slices.Contains(t.Daemons, spec.DaemonEgress) {
			checks = append(checks, Check{
				Name: "a CONNECT through the egress proxy to " + ap.String() + ", a service the agent must never reach",
				Hole: "the egress proxy connects to " + ap.String() + ", which the bundle must never dial",
				Kind: KindProxyConnect, Addr: at(bundle, t.ProxyPort), Target: ap.String(), Expect: ExpectDenied,
			})
		}
	}
	for _, p := range t.InternalPorts {
		if !validPort(p) {
			return nil, fmt.Errorf("internal port %d is not a port", p)
		}
		addr := at(bundle, p)
		checks = append(checks, Check{
			Name: "the bundle's internal port " + addr,
			Hole: "the agent can reach the bundle's internal port " + strconv.Itoa(p) + ", which should listen on the bundle's loopback only",
			Kind: KindTCP, Addr: addr, Expect: ExpectClosed,
		})
	}
	for _, h := range ifaces {
		if slices.Contains(hosts, h) {
			continue // below
		}
		checks = append(checks, Check{
			Name: "the host through its address " + at(h, hostPort),
			Hole: "the agent can reach the host at its address " + h.String() + ": it answered (a TCP reset counts)",
			Kind: KindTCP, Addr: at(h, hostPort), Expect: ExpectUnreachable,
		})
	}
	for _, h := range hosts {
		checks = append(checks,
			Check{
				Name: "the host through the gateway " + at(h, 9),
				Hole: "the agent can reach the host: it answered (a TCP reset counts)",
				Kind: KindTCP, Addr: at(h, 9), Expect: ExpectUnreachable,
			},
			Check{
				Name: "a DNS query for " + VerifyHost + " to the host through the gateway " + at(h, dnsPort),
				Hole: "the agent can reach the host over UDP: a DNS server or the host's kernel answered",
				Kind: KindDNS, Addr: at(h, dnsPort), Target: VerifyHost, Expect: ExpectUnreachable,
			})
	}
	checks = append(checks, Check{
		Name: "IPv6 in the agent",
		Hole: "the agent has IPv6, which the bottle's network does not confine",
		Kind: KindIPv6, Expect: ExpectNone,
	})
	return checks, nil
}

func validPort(p int) bool { return p > 0 && p < 65536 }

// interceptChecks returns the checks that the bundle intercepts the
// target's credentialed hosts and no other: none without credentialed
// hosts.
func interceptChecks(t Target, rules spec.EgressRules, proxy string, maxLabel int) ([]Check, error) {
	if len(t.Credentialed) == 0 {
		return nil, nil
	}
	ca := string(t.CA)
	if _, err := parseCA(ca); err != nil {
		return nil, fmt.Errorf("the bottle's CA, for the credentialed hosts: %w", err)
	}
	var hosts []string
	for _, h := range t.Credentialed {
		n := spec.NormalizeHost(h)
		if e := spec.CheckHost(n); e != nil || isIPLiteral(n) {
			return nil, fmt.Errorf("credentialed host %q is not a host name", h)
		}
		if !slices.Contains(hosts, n) {
			hosts = append(hosts, n)
		}
	}
	var checks []Check
	for _, h := range hosts[:min(len(hosts), maxInterceptChecks)] {
		port, ok := interceptPort(rules, h)
		if !ok {
			// No port of the host carries TLS that the proxy checks: the
			// bundle has nothing to intercept there.
			continue
		}
		target := net.JoinHostPort(h, strconv.Itoa(port))
		checks = append(checks, Check{
			Name: "a TLS handshake through the egress proxy with " + target + ", a credentialed host, answered with a certificate of the bottle's CA",
			Hole: "the bundle does not add the credential for " + h + ": requests would go without it, or an older bundle runs",
			Kind: KindProxyIntercept, Addr: proxy, Target: target, CA: ca, Expect: ExpectIntercepted,
		})
	}
	notIntercepted := func(host, why string) {
		target := net.JoinHostPort(host, "443")
		checks = append(checks, Check{
			Name: "a TLS handshake through the egress proxy with " + target + ", " + why + ", left to the upstream",
			Hole: "the bundle intercepts " + host + ", a host that has no credential",
			Kind: KindProxyIntercept, Addr: proxy, Target: target, CA: ca, Expect: ExpectNotIntercepted,
		})
	}
	var others []string
	for _, r := range rules {
		if len(others) == maxNotInterceptChecks {
			break
		}
		if _, ok := rules.Match(r.Host, 443); r.Wildcard || !ok || slices.Contains(hosts, r.Host) || slices.Contains(others, r.Host) {
			continue
		}
		others = append(others, r.Host)
		notIntercepted(r.Host, "a host without a credential")
	}
	if name, r, ok := underWildcard(rules, hosts, t.Nonce, maxLabel); ok {
		notIntercepted(name, "a name without a credential under the rule "+r.String())
	}
	return checks, nil
}

// interceptPort is the port on which a credentialed host is tried: 443
// when a rule allows it there, else the first port a /tls rule gives it.
// The proxy reads the ClientHello only there, so only there can it
// intercept.
func interceptPort(rules spec.EgressRules, host string) (int, bool) {
	if _, ok := rules.Match(host, 443); ok {
		return 443, true
	}
	for _, r := range rules {
		if r.TLS && r.MatchesHost(host) && len(r.Ports) > 0 {
			return r.Ports[0], true
		}
	}
	return 0, false
}

// underWildcard returns a name under a wildcard rule that allows it on
// 443, new with each nonce: under a credentialed host first (the CA's
// name constraints permit the names under a permitted one, so only this
// check would see a bundle that intercepts them), else under the first
// such rule.
func underWildcard(rules spec.EgressRules, credentialed []string, nonce string, maxLabel int) (string, spec.EgressRule, bool) {
	label := "verify"
	if nonce != "" {
		label += "-" + nonce
	}
	label = label[:min(len(label), maxLabel)]
	var first string
	var firstRule spec.EgressRule
	for _, r := range rules {
		name := label + "." + r.Host
		if !r.Wildcard || !r.Matches(name, 443) || spec.CheckHost(name) != nil || slices.Contains(credentialed, name) {
			continue
		}
		if slices.ContainsFunc(credentialed, func(h string) bool { return h == r.Host || strings.HasSuffix(r.Host, "."+h) }) {
			return name, r, true
		}
		if first == "" {
			first, firstRule = name, r
		}
	}
	return first, firstRule, first != ""
}

var nonceRE = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// covered reports whether a prefix of cidrs holds a.
func covered(cidrs []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(cidrs, func(p netip.Prefix) bool { return p.Contains(a) })
}

// pickHostAddrs returns at most maxHostChecks of the host's IPv4
// addresses, in their order: those inside allowCIDRs first (the proxy's
// rules would let it dial them), and at least one outside when there is
// one. Loopback and unspecified addresses are left out: the agent's own
// loopback is not the host's.
func pickHostAddrs(addrs []netip.Addr, cidrs []netip.Prefix) []netip.Addr {
	var in, out []netip.Addr
	for _, a := range addrs {
		switch {
		case !a.Is4() || a.IsLoopback() || a.IsUnspecified() || slices.Contains(in, a) || slices.Contains(out, a):
		case covered(cidrs, a):
			in = append(in, a)
		default:
			out = append(out, a)
		}
	}
	if len(out) > 0 && len(in) >= maxHostChecks {
		in = in[:maxHostChecks-1]
	}
	picked := append(in, out...)
	return picked[:min(len(picked), maxHostChecks)]
}

// tlsHost returns a name that a rule allows on port 443, where the proxy
// checks the SNI of what a tunnel carries: the first exact rule's host,
// else a name under the first wildcard rule.
func tlsHost(rules spec.EgressRules) (string, spec.EgressRule, bool) {
	for _, r := range rules {
		if !r.Wildcard && r.Matches(r.Host, 443) {
			return r.Host, r, true
		}
	}
	for _, r := range rules {
		if r.Wildcard && r.Matches("verify."+r.Host, 443) {
			return "verify." + r.Host, r, true
		}
	}
	return "", spec.EgressRule{}, false
}

// uncovered returns the first documentation address that no prefix
// covers.
func uncovered(cidrs []netip.Prefix) (string, bool) {
	for _, s := range docAddrs {
		if !covered(cidrs, netip.MustParseAddr(s)) {
			return s, true
		}
	}
	return "", false
}

// deniedPort returns the first non-wildcard rule that limits its ports,
// with a port that no rule allows for its host.
func deniedPort(rules spec.EgressRules) (spec.EgressRule, int, bool) {
	for _, r := range rules {
		if r.Wildcard || r.Ports == nil {
			continue
		}
		// A rule for any port that covers the host leaves no port to deny.
		// Without one, the ports allowed are the few that rules list, so
		// the search below stops after a handful of tries.
		if slices.ContainsFunc(rules, func(o spec.EgressRule) bool { return o.Ports == nil && o.MatchesHost(r.Host) }) {
			continue
		}
		for p := 9; p < 65536; p++ {
			if _, ok := rules.Match(r.Host, p); !ok {
				return r, p, true
			}
		}
	}
	return spec.EgressRule{}, 0, false
}

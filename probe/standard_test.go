package probe

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestStandard(t *testing.T) {
	t.Parallel()
	targets := []struct {
		name string
		t    Target
	}{
		{"everything", Target{
			BundleIP: "10.213.4.2", ProxyPort: 8888, DNSPort: 53, InternalPorts: []int{9901},
			Daemons:    []string{"egress", "dns"},
			Allow:      []string{"*.github.com", "example.com:8443", "pypi.org"},
			AllowCIDRs: []string{"192.0.2.0/24", "10.9.0.0/16", "172.16.0.0/12"},
			HostAddrs:  []string{"10.213.4.1", "172.30.0.1", "10.213.4.1"},
			HostInterfaceAddrs: []string{"127.0.0.1", "172.17.0.1", "10.213.4.1", "172.30.0.1", "192.168.1.20",
				"fe80::1", "10.9.3.4", "::ffff:172.18.0.1"},
			Nonce: "a1b2c3",
		}},
		{"a wildcard rule only, a spec's label limit", Target{
			BundleIP: "10.213.9.2", ProxyPort: 8888, Daemons: []string{"egress", "dns"},
			Allow:             []string{"*.githubusercontent.com:443", "github.com:22"},
			HostAddrs:         []string{"10.213.9.1"},
			DNSMaxLabelLength: 5,
		}},
		{"egress without limited rules", Target{
			BundleIP: "10.213.5.2", ProxyPort: 3128, Daemons: []string{"egress"},
			Allow:      []string{"example.com:*", "*.example.org:22"},
			AllowCIDRs: []string{"0.0.0.0/0"},
			HostAddrs:  []string{"10.213.5.1"},
		}},
		{"rules overlap on ports", Target{
			BundleIP: "10.213.6.2", ProxyPort: 8888, Daemons: []string{"egress"},
			Allow:      []string{"*.pypi.org:*", "pypi.org", "PyPI.org.:9", "files.pypi.org"},
			AllowCIDRs: []string{"192.0.2.1/32", "198.51.100.0/24", "203.0.113.0/25"},
		}},
		{"dns alone on its own port", Target{
			BundleIP: "10.213.7.2", DNSPort: 5353, Daemons: []string{"dns"},
		}},
		{"no daemons, an ipv6 gateway", Target{
			BundleIP: "10.213.8.2", InternalPorts: []int{9901, 9902}, HostAddrs: []string{"10.213.8.1", "fd00:1::1"},
		}},
		{"credentials", Target{
			BundleIP: "10.213.10.2", ProxyPort: 8888, Daemons: []string{"egress"},
			Allow: []string{"*.githubusercontent.com", "api.example.com", "GitHub.com", "files.example.com:8443",
				"*.api.example.com", "pypi.org:443", "example.net", "example.org"},
			Credentialed: []string{"api.example.com", "GitHub.com.", "github.com"},
			CA:           testCA(t),
			Nonce:        "a1b2c3",
		}},
		{"a credentialed host on a /tls port, no other on 443", Target{
			BundleIP: "10.213.11.2", ProxyPort: 8888, Daemons: []string{"egress", "dns"},
			Allow:        []string{"api.example.com:8443/tls", "*.example.org:22", "github.com:22"},
			Credentialed: []string{"api.example.com"},
			CA:           testCA(t),
		}},
	}
	var out bytes.Buffer
	for _, tt := range targets {
		checks, err := Standard(tt.t)
		if err != nil {
			t.Fatalf("%s: Standard() = %v", tt.name, err)
		}
		for i, c := range checks {
			if err := c.Validate(); err != nil {
				t.Errorf("%s: check %d is invalid: %v", tt.name, i, err)
			}
			if c.Name == "" || c.Hole == "" {
				t.Errorf("%s: check %d has no name or hole: %+v", tt.name, i, c)
			}
			if c.Kind == KindProxyIntercept {
				// Each carries the target's CA, which the golden names
				// rather than repeats.
				if c.CA != string(tt.t.CA) {
					t.Errorf("%s: check %d carries another CA than the target's: %q", tt.name, i, c.CA)
				}
				checks[i].CA = "<the target's CA>"
			}
		}
		b, err := json.MarshalIndent(checks, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "# %s\n%s\n\n", tt.name, b)
	}
	golden(t, "standard.golden", out.Bytes())
}

func TestStandardErrors(t *testing.T) {
	t.Parallel()
	caPEM := testCA(t)
	ok := Target{BundleIP: "10.0.0.2", ProxyPort: 8888, Daemons: []string{"egress", "dns"}}
	tests := []struct {
		name string
		edit func(*Target)
		err  string
	}{
		{"bundle IP", func(t *Target) { t.BundleIP = "bundle" }, "bundle IP \"bundle\""},
		{"ipv6 bundle IP", func(t *Target) { t.BundleIP = "fd00::2" }, "not an IPv4 address"},
		{"rule", func(t *Target) { t.Allow = []string{"example.com", "10.0.0.1"} }, "egress rules: \"10.0.0.1\" is an IP address"},
		{"cidr", func(t *Target) { t.AllowCIDRs = []string{"10.0.0.0"} }, "allowCIDRs: \"10.0.0.0\""},
		{"host", func(t *Target) { t.HostAddrs = []string{"gateway"} }, "host address \"gateway\""},
		{"host interface", func(t *Target) { t.HostInterfaceAddrs = []string{"10.0.0.1/8"} }, "host interface address \"10.0.0.1/8\""},
		{"nonce", func(t *Target) { t.Nonce = "A.B" }, "nonce \"A.B\""},
		{"proxy port", func(t *Target) { t.ProxyPort = 0 }, "proxy port 0"},
		{"dns port", func(t *Target) { t.DNSPort = 65536 }, "DNS port 65536"},
		{"internal port", func(t *Target) { t.InternalPorts = []int{-1} }, "internal port -1"},
		{"credentials without a CA", func(t *Target) { t.Credentialed = []string{"example.com"} }, "the bottle's CA, for the credentialed hosts: ca is not a PEM"},
		{"a CA that is a key", func(t *Target) {
			t.Credentialed, t.CA = []string{"example.com"}, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}, "a PEM PRIVATE KEY block"},
		{"a credentialed address", func(t *Target) {
			t.Allow, t.Credentialed, t.CA = []string{"example.com"}, []string{"10.0.0.1"}, caPEM
		}, "credentialed host \"10.0.0.1\" is not a host name"},
		{"a credentialed wildcard", func(t *Target) {
			t.Allow, t.Credentialed, t.CA = []string{"example.com"}, []string{"*.example.com"}, caPEM
		}, "credentialed host \"*.example.com\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Standard(ok); err != nil {
				t.Fatalf("Standard(base) = %v", err)
			}
			target := ok
			tt.edit(&target)
			checks, err := Standard(target)
			if err == nil || !strings.Contains(err.Error(), tt.err) || checks != nil {
				t.Fatalf("Standard() = %d checks, %v; want an error with %q", len(checks), err, tt.err)
			}
		})
	}
}

// testCA is testdata/ca.pem: a CA certificate whose name constraints
// permit api.example.com, fixed so that the golden file is.
func testCA(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./probe -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./probe -update rewrites it); got:\n%s", path, got)
	}
}

// TestDeniedPort covers the rules that leave no port to deny: with 200 of
// them and a rule for any port, the search must not try every port of
// every rule.
func TestDeniedPort(t *testing.T) {
	t.Parallel()
	many := []string{"*.example.com:*"}
	for i := range 200 {
		many = append(many, fmt.Sprintf("h%d.example.com", i))
	}
	tests := []struct {
		name  string
		allow []string
		want  string // the rule and the port, or "" for none
	}{
		{"default ports", []string{"example.com"}, "example.com 9"},
		{"port 9 allowed", []string{"example.com:9", "example.com:10", "example.com"}, "example.com:9 11"},
		{"any port for the same host", []string{"example.com", "example.com:*"}, ""},
		{"any port under a wildcard", many, ""},
		{"the next rule", []string{"a.example.com", "*.example.com:*", "example.com"}, "example.com 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rules, err := spec.ParseEgressRules(tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if r, p, ok := deniedPort(rules); ok {
				got = fmt.Sprintf("%s %d", r, p)
			}
			if got != tt.want {
				t.Fatalf("deniedPort() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPickHostAddrs(t *testing.T) {
	t.Parallel()
	many := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s.%d", prefix, i+1))
		}
		return out
	}
	tests := []struct {
		name  string
		addrs []string
		cidrs []string
		want  string
	}{
		{"none", nil, nil, ""},
		{"inside first, in order", []string{"192.168.1.5", "172.17.0.1", "10.0.0.1"}, []string{"10.0.0.0/8", "172.16.0.0/12"},
			"172.17.0.1 10.0.0.1 192.168.1.5"},
		{"not loopback, unspecified, IPv6; unmapped; once", []string{"127.0.0.1", "0.0.0.0", "fd00::1", "::ffff:10.1.1.1", "10.1.1.1"}, nil,
			"10.1.1.1"},
		{"eight inside leave room for one outside", append(many("10.0.0", 10), "192.168.1.5"), []string{"10.0.0.0/8"},
			"10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6 10.0.0.7 192.168.1.5"},
		{"eight inside, none outside", many("10.0.0", 10), []string{"10.0.0.0/8"},
			"10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6 10.0.0.7 10.0.0.8"},
		{"outside only, bounded", many("10.0.0", 10), nil,
			"10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6 10.0.0.7 10.0.0.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var addrs []netip.Addr
			for _, s := range tt.addrs {
				addrs = append(addrs, netip.MustParseAddr(s).Unmap())
			}
			var cidrs []netip.Prefix
			for _, s := range tt.cidrs {
				cidrs = append(cidrs, netip.MustParsePrefix(s))
			}
			var got []string
			for _, a := range pickHostAddrs(addrs, cidrs) {
				got = append(got, a.String())
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Fatalf("pickHostAddrs() = %q, want %q", g, tt.want)
			}
		})
	}
}

func TestTLSHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		allow []string
		want  string // host and rule, or "" for none
	}{
		{[]string{"github.com:22", "example.com"}, "example.com example.com"},
		{[]string{"*.example.com", "pypi.org:443"}, "pypi.org pypi.org:443"},
		{[]string{"*.example.com:8443", "*.example.org:*"}, "verify.example.org *.example.org:*"},
		{[]string{"example.com:8443", "github.com:22", "*.example.net:80"}, ""},
	}
	for _, tt := range tests {
		rules, err := spec.ParseEgressRules(tt.allow)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if h, r, ok := tlsHost(rules); ok {
			got = h + " " + r.String()
		}
		if got != tt.want {
			t.Errorf("tlsHost(%q) = %q, want %q", tt.allow, got, tt.want)
		}
	}
}

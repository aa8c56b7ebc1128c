package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/secret"
	"github.com/bottle-apply/bottle-apply/spec"
)

func helloBottle() *bottle.Bottle {
	b := bottle.New(spec.Bottle{
		APIVersion: spec.APIVersion, Kind: spec.KindBottle, Metadata: spec.Metadata{Name: "hello"},
		Spec: spec.Spec{
			Backend: spec.BackendDocker,
			Agent: spec.Agent{Image: "agent:1", Command: []string{"sleep", "infinity"}, Workdir: "/w",
				Env: map[string]string{"FOO": "bar", "API_KEY": "s3cret"}},
			Network: spec.Network{Subnet: "192.168.240.0/24", BundleIP: "192.168.240.2", EgressSubnet: "10.213.0.16/28",
				AllowCIDRs: []string{"10.1.0.0/16"}},
			Bundle: spec.Bundle{Daemons: []string{"egress"}, Egress: spec.Egress{Allow: []string{"api.example.com", "*.pkg.example.org:443"}}},
		},
	})
	return &b
}

func byRole(rs []reconcile.Resource) map[string]reconcile.Resource {
	m := map[string]reconcile.Resource{}
	for _, r := range rs {
		m[r.Role] = r
	}
	return m
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	rs := byRole(translate(helloBottle(), "bottle-apply/bundle:abc", "v1"))
	if len(rs) != 4 {
		t.Fatalf("translate made %d resources, want 4", len(rs))
	}
	in := rs[bottle.RoleInternal].Config.(networkConfig)
	wantNet := networkConfig{Name: "bottle-hello-internal", Internal: true, Subnet: "192.168.240.0/24", Gateway: "192.168.240.1",
		Options: map[string]string{"com.docker.network.bridge.inhibit_ipv4": "true"}, Labels: in.Labels}
	if !reflect.DeepEqual(in, wantNet) {
		t.Errorf("internal network = %+v, want %+v", in, wantNet)
	}
	if in.Labels[bottle.LabelName] != "hello" || in.Labels[bottle.LabelRole] != bottle.RoleInternal || in.Labels[bottle.LabelHash] == "" {
		t.Errorf("internal network labels = %v", in.Labels)
	}

	config, host, netcfg := containerSpec(rs[bottle.RoleAgent].Config.(containerConfig))
	proxy := "http://192.168.240.2:8888"
	wantEnv := []string{"API_KEY=s3cret", "FOO=bar", "HTTPS_PROXY=" + proxy, "HTTP_PROXY=" + proxy,
		"NODE_USE_ENV_PROXY=1", "NO_PROXY=localhost,127.0.0.1", "http_proxy=" + proxy, "https_proxy=" + proxy, "no_proxy=localhost,127.0.0.1"}
	if !reflect.DeepEqual(config.Env, wantEnv) {
		t.Errorf("agent env = %q, want %q", config.Env, wantEnv)
	}
	if config.Image != "agent:1" || !reflect.DeepEqual([]string(config.Cmd), []string{"sleep", "infinity"}) || config.WorkingDir != "/w" {
		t.Errorf("agent config = %+v", config)
	}
	if host.NetworkMode != container.NetworkMode("bottle-hello-internal") || host.Init == nil || !*host.Init {
		t.Errorf("agent host config = %+v", host)
	}
	// The agent's isolation: lookups go to the bundle, no IPv6, no raw
	// sockets.
	if !reflect.DeepEqual(host.DNS, []string{"192.168.240.2"}) ||
		host.Sysctls["net.ipv6.conf.all.disable_ipv6"] != "1" || host.Sysctls["net.ipv6.conf.default.disable_ipv6"] != "1" ||
		!reflect.DeepEqual([]string(host.CapDrop), []string{"NET_RAW"}) || host.Privileged {
		t.Errorf("agent isolation: DNS=%v sysctls=%v capdrop=%v", host.DNS, host.Sysctls, host.CapDrop)
	}
	// The defaults: 8 GiB, 4096 processes, no CPU limit.
	if host.Memory != 8<<30 || host.PidsLimit == nil || *host.PidsLimit != 4096 || host.NanoCPUs != 0 {
		t.Errorf("agent limits: memory=%d pids=%v cpus=%d; want 8 GiB, 4096, none", host.Memory, host.PidsLimit, host.NanoCPUs)
	}
	wantAgentEP := &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "192.168.240.254"}}
	if len(netcfg.EndpointsConfig) != 1 || !reflect.DeepEqual(netcfg.EndpointsConfig["bottle-hello-internal"], wantAgentEP) {
		t.Errorf("agent endpoints = %+v", netcfg.EndpointsConfig)
	}

	bcfg := rs[bottle.RoleBundle].Config.(containerConfig)
	if !bcfg.Builtin || bcfg.Image != "bottle-apply/bundle:abc" {
		t.Errorf("bundle image = %q builtin=%v", bcfg.Image, bcfg.Builtin)
	}
	bconfig, bhost, bnet := containerSpec(bcfg)
	wantBundleEnv := []string{"BOTTLE_ALLOW_CIDRS=10.1.0.0/16", "BOTTLE_DAEMONS=egress", "BOTTLE_DNS_PORT=53",
		"BOTTLE_EGRESS_ALLOW=api.example.com,*.pkg.example.org:443", "BOTTLE_HOST_ADDRS=192.168.240.1,10.213.0.17", "BOTTLE_LISTEN_IP=192.168.240.2", "BOTTLE_NAME=hello", "BOTTLE_PROXY_PORT=8888"}
	if !reflect.DeepEqual(bconfig.Env, wantBundleEnv) {
		t.Errorf("bundle env = %q, want %q", bconfig.Env, wantBundleEnv)
	}
	// The built-in bundle keeps only the capability to bind port 53.
	if !reflect.DeepEqual([]string(bhost.CapDrop), []string{"ALL"}) || !reflect.DeepEqual([]string(bhost.CapAdd), []string{"NET_BIND_SERVICE"}) ||
		!bhost.ReadonlyRootfs || !reflect.DeepEqual(bhost.SecurityOpt, []string{"no-new-privileges"}) {
		t.Errorf("bundle host config: capdrop=%v capadd=%v ro=%v secopt=%v", bhost.CapDrop, bhost.CapAdd, bhost.ReadonlyRootfs, bhost.SecurityOpt)
	}
	// Bounded: memory, processes and the log the agent can fill.
	if bhost.Memory != 512<<20 || bhost.PidsLimit == nil || *bhost.PidsLimit != 1024 ||
		bhost.LogConfig.Type != "json-file" || bhost.LogConfig.Config["max-size"] != "10m" || bhost.LogConfig.Config["max-file"] != "3" {
		t.Errorf("bundle limits: memory=%d pids=%v log=%+v", bhost.Memory, bhost.PidsLimit, bhost.LogConfig)
	}
	// A proxy, never a router.
	if want := map[string]string{"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0",
		"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}; !reflect.DeepEqual(bhost.Sysctls, want) {
		t.Errorf("bundle sysctls = %v, want %v", bhost.Sysctls, want)
	}
	want := &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "192.168.240.2"}}
	if !reflect.DeepEqual(bnet.EndpointsConfig["bottle-hello-internal"], want) || bhost.NetworkMode != "bottle-hello-internal" {
		t.Errorf("bundle endpoint = %+v", bnet.EndpointsConfig)
	}
	if !reflect.DeepEqual(bcfg.Networks, []endpoint{{"bottle-hello-internal", "192.168.240.2"}, {"bottle-hello-egress", ""}}) {
		t.Errorf("bundle networks = %+v", bcfg.Networks)
	}
	if !reflect.DeepEqual(rs[bottle.RoleAgent].DependsOn, []string{"docker-network:hello/internal"}) {
		t.Errorf("agent depends on %v; it must not wait for the bundle", rs[bottle.RoleAgent].DependsOn)
	}
}

// The DNS limits reach the bundle as BOTTLE_DNS_* variables, only those
// the spec sets, in the env's sorted order; the agent's env is unchanged.
func TestBundleDNSLimitsEnv(t *testing.T) {
	t.Parallel()
	base := byRole(translate(helloBottle(), "img", "v"))
	b := helloBottle()
	b.Spec.Bundle.Egress.DNS = spec.EgressDNS{MaxLabelLength: 20, NewNamesPerMinute: 300}
	rs := byRole(translate(b, "img", "v"))
	var got []string
	for _, e := range rs[bottle.RoleBundle].Config.(containerConfig).Env {
		if strings.HasPrefix(e, "BOTTLE_DNS_") {
			got = append(got, e)
		}
	}
	want := []string{"BOTTLE_DNS_MAX_LABEL_LENGTH=20", "BOTTLE_DNS_NEW_NAMES_PER_MINUTE=300", "BOTTLE_DNS_PORT=53"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bundle DNS env = %q, want %q", got, want)
	}
	agent, was := rs[bottle.RoleAgent].Config.(containerConfig), base[bottle.RoleAgent].Config.(containerConfig)
	if !reflect.DeepEqual(agent.Env, was.Env) || rs[bottle.RoleAgent].Hash != base[bottle.RoleAgent].Hash {
		t.Errorf("the agent changed with the bundle's DNS limits")
	}
}

// The hashes are part of the contract with resources made by earlier
// versions: a change here replaces every user's bottles.
func TestHashIsStable(t *testing.T) {
	t.Parallel()
	rs := byRole(translate(helloBottle(), "bottle-apply/bundle:abc", "any-version"))
	got := map[string]string{}
	for role, r := range rs {
		got[role] = r.Hash[:16]
	}
	again := byRole(translate(helloBottle(), "bottle-apply/bundle:abc", "other-version"))
	for role, r := range again {
		if r.Hash[:16] != got[role] {
			t.Errorf("%s hash depends on the version: %s vs %s", role, r.Hash[:16], got[role])
		}
	}
	pinned := map[string]string{
		bottle.RoleInternal: pinInternal, bottle.RoleEgress: pinEgress, bottle.RoleBundle: pinBundle, bottle.RoleAgent: pinAgent,
	}
	if !reflect.DeepEqual(got, pinned) {
		t.Errorf("hashes changed:\n got %v\nwant %v", got, pinned)
	}
}

// Changed on purpose twice: once when the internal network lost its host
// address and the containers got their isolation settings and limits
// (hardening 2), then when the agent and the bundle got the defaults
// (defaults 1: memory, pids, NODE_USE_ENV_PROXY, IP forwarding off). Each
// time, existing bottles had to get them too. TestDefaultsInputAlone
// checks that the second change is the "defaults" input and nothing else.
const (
	pinInternal = "75e87628d4c3a22b"
	pinEgress   = "9703da613b50ed75"
	pinBundle   = "557438b22acdaf13"
	pinAgent    = "161d3086a1887aa3"
)

// The hashes before the defaults: what bottle-apply wrote on the
// containers of every bottle made before them.
const (
	pinBundleBeforeDefaults = "0ac8f2f6737ee663"
	pinAgentBeforeDefaults  = "0255f3f195d00351"
)

// TestDefaultsInputAlone: without the "defaults" input, the agent and the
// bundle hash as they did before it, so that the first apply after the
// upgrade says "defaults changed" for them, and nothing else.
func TestDefaultsInputAlone(t *testing.T) {
	t.Parallel()
	rs := byRole(translate(helloBottle(), "bottle-apply/bundle:abc", "v"))
	for role, pin := range map[string]string{bottle.RoleAgent: pinAgentBeforeDefaults, bottle.RoleBundle: pinBundleBeforeDefaults} {
		r := rs[role]
		if r.Inputs["defaults"] == "" {
			t.Fatalf("%s has no defaults input: %v", role, r.Inputs)
		}
		old := maps.Clone(r.Inputs)
		delete(old, "defaults")
		raw, err := json.Marshal(old)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(raw)
		if got := hex.EncodeToString(sum[:])[:16]; got != pin {
			t.Errorf("%s without the defaults input hashes %s, want %s (the hash before the defaults)", role, got, pin)
		}
		// What the plan says on the first apply after the upgrade.
		before := withManaged(r)
		before.Inputs, before.Hash = old, hex.EncodeToString(sum[:])
		p, err := reconcile.Diff([]reconcile.Resource{r}, []reconcile.Resource{before}, reconcile.Scope{Bottles: []string{"hello"}})
		if err != nil {
			t.Fatal(err)
		}
		if s := p.Steps[0]; s.Action != reconcile.Replace || s.Reason != "defaults changed" {
			t.Errorf("%s: %s, %q; want Replace, \"defaults changed\"", role, s.Action, s.Reason)
		}
	}
}

// The agent's limits: memory and processes always limited, by the spec's
// values or the defaults; CPUs only when the spec says. Setting one
// replaces the agent for that one alone.
func TestAgentLimits(t *testing.T) {
	t.Parallel()
	base := byRole(translate(helloBottle(), "img", "v"))[bottle.RoleAgent]
	tests := []struct {
		name                 string
		cpus, memory, pids   int
		nanoCPUs, mem, limit int64
		reason               string
	}{
		{"defaults", 0, 0, 0, 0, 8 << 30, 4096, ""},
		{"memory", 0, 512, 0, 0, 512 << 20, 4096, "memory changed"},
		{"memory at the default", 0, 8192, 0, 0, 8 << 30, 4096, "memory changed"},
		{"pids", 0, 0, 100, 0, 8 << 30, 100, "pids changed"},
		{"cpus", 2, 0, 0, 2e9, 8 << 30, 4096, "cpus changed"},
		{"all", 4, 65536, 100000, 4e9, 64 << 30, 100000, "cpus, memory, pids changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := helloBottle()
			b.Spec.Agent.CPUs, b.Spec.Agent.Memory, b.Spec.Agent.Pids = tt.cpus, tt.memory, tt.pids
			r := byRole(translate(b, "img", "v"))[bottle.RoleAgent]
			_, host, _ := containerSpec(r.Config.(containerConfig))
			if host.NanoCPUs != tt.nanoCPUs || host.Memory != tt.mem || host.PidsLimit == nil || *host.PidsLimit != tt.limit {
				t.Errorf("limits: cpus=%d memory=%d pids=%v; want %d, %d, %d", host.NanoCPUs, host.Memory, host.PidsLimit, tt.nanoCPUs, tt.mem, tt.limit)
			}
			reason := ""
			if r.Hash != base.Hash {
				p, err := reconcile.Diff([]reconcile.Resource{r}, []reconcile.Resource{withManaged(base)}, reconcile.Scope{Bottles: []string{"hello"}})
				if err != nil {
					t.Fatal(err)
				}
				reason = p.Steps[0].Reason
			}
			if reason != tt.reason {
				t.Errorf("reason %q, want %q", reason, tt.reason)
			}
		})
	}
}

// A bundle of the spec's own image is no router either; it keeps its own
// limits and capabilities, which bottle-apply does not know.
func TestCustomBundleSysctls(t *testing.T) {
	t.Parallel()
	b := helloBottle()
	b.Spec.Bundle.Image = "example.com/my-bundle:1"
	_, host, _ := containerSpec(byRole(translate(b, "img", "v"))[bottle.RoleBundle].Config.(containerConfig))
	if host.Sysctls["net.ipv4.ip_forward"] != "0" || host.Sysctls["net.ipv6.conf.all.forwarding"] != "0" {
		t.Errorf("custom bundle sysctls = %v, want forwarding off", host.Sysctls)
	}
	if host.Memory != 0 || host.PidsLimit != nil || len(host.CapDrop) != 0 {
		t.Errorf("custom bundle: memory=%d pids=%v capdrop=%v, want the image's own", host.Memory, host.PidsLimit, host.CapDrop)
	}
}

func TestHashReasons(t *testing.T) {
	t.Parallel()
	base := byRole(translate(helloBottle(), "img", "v"))
	cases := []struct {
		name   string
		change func(b *bottle.Bottle)
		want   map[string]string // role -> changed inputs ("" = same hash)
	}{
		{"env", func(b *bottle.Bottle) { b.Spec.Agent.Env["FOO"] = "baz" },
			map[string]string{bottle.RoleAgent: "env changed"}},
		{"subnet", func(b *bottle.Bottle) {
			b.Network.Subnet, b.Network.BundleIP = "192.168.241.0/24", "192.168.241.2"
		}, map[string]string{bottle.RoleInternal: "subnet changed", bottle.RoleBundle: "ip changed", bottle.RoleAgent: "ip, proxy changed"}},
		{"bundle takes the agent's address", func(b *bottle.Bottle) { b.Network.BundleIP = "192.168.240.254" },
			map[string]string{bottle.RoleBundle: "ip changed", bottle.RoleAgent: "ip, proxy changed"}},
		{"daemons", func(b *bottle.Bottle) { b.Spec.Bundle.Daemons = nil },
			map[string]string{bottle.RoleBundle: "daemons changed", bottle.RoleAgent: "bundle changed"}},
		{"egress allowlist", func(b *bottle.Bottle) { b.Spec.Bundle.Egress.Allow = append(b.Spec.Bundle.Egress.Allow, "pypi.org") },
			map[string]string{bottle.RoleBundle: "egressAllow changed", bottle.RoleAgent: "bundle changed"}},
		{"allowCIDRs", func(b *bottle.Bottle) { b.Network.AllowCIDRs = nil },
			map[string]string{bottle.RoleBundle: "allowCIDRs changed", bottle.RoleAgent: "bundle changed"}},
		{"dns limits", func(b *bottle.Bottle) { b.Spec.Bundle.Egress.DNS.NewNamesPerMinute = 120 },
			map[string]string{bottle.RoleBundle: "egressDNS changed"}},
		{"dns limits set to the defaults", func(b *bottle.Bottle) {
			b.Spec.Bundle.Egress.DNS = spec.EgressDNS{MaxNameLength: 100, MaxLabelLength: 40, NewNamesPerMinute: 60}
		}, map[string]string{bottle.RoleBundle: "egressDNS changed"}},
		{"daemon order does not matter", func(b *bottle.Bottle) { b.Spec.Bundle.Daemons = []string{"egress"} }, nil},
		{"image", func(b *bottle.Bottle) { b.Spec.Agent.Image = "agent:2" }, map[string]string{bottle.RoleAgent: "image changed"}},
		{"resources", func(b *bottle.Bottle) { b.Spec.Agent.CPUs, b.Spec.Agent.Memory = 2, 512 },
			map[string]string{bottle.RoleAgent: "cpus, memory changed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := helloBottle()
			tc.change(b)
			after := byRole(translate(b, "img", "v"))
			for role, r := range after {
				old := base[role]
				got := ""
				if r.Hash != old.Hash {
					p, err := reconcile.Diff([]reconcile.Resource{r}, []reconcile.Resource{withManaged(old)}, reconcile.Scope{Bottles: []string{"hello"}})
					if err != nil {
						t.Fatal(err)
					}
					got = p.Steps[0].Reason
				}
				if got != tc.want[role] {
					t.Errorf("%s: reason %q, want %q", role, got, tc.want[role])
				}
			}
		})
	}
}

// A new built-in bundle image (a new bottle-apply, new bottle-bundle
// builds) replaces the bundles made of the old one, and nothing else: the
// agent hashes spec.bundle.image, never the built-in image's reference.
func TestBuiltinImageReplacesTheBundleAlone(t *testing.T) {
	t.Parallel()
	before := byRole(translate(helloBottle(), "bottle-apply/bundle:old", "v1"))
	after := byRole(translate(helloBottle(), "bottle-apply/bundle:new", "v2"))
	for role, r := range after {
		var observed []reconcile.Resource
		for _, o := range before {
			observed = append(observed, withManaged(o))
		}
		p, err := reconcile.Diff([]reconcile.Resource{r}, observed, reconcile.Scope{Bottles: []string{"hello"}})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, s := range p.Steps {
			if s.ResourceID == r.ID() && s.Action != reconcile.NoOp {
				got = s.Action.String() + ": " + s.Reason
			}
		}
		want := ""
		if role == bottle.RoleBundle {
			want = reconcile.Replace.String() + ": image changed"
		}
		if got != want {
			t.Errorf("%s: %q, want %q", role, got, want)
		}
	}
}

func withManaged(r reconcile.Resource) reconcile.Resource {
	r.Managed, r.State, r.DependsOn, r.BoundTo = true, reconcile.StateRunning, nil, nil
	return r
}

func TestAgentAddr(t *testing.T) {
	t.Parallel()
	cases := []struct{ subnet, bundle, want string }{
		{"192.168.240.0/24", "192.168.240.2", "192.168.240.254"},
		{"192.168.240.0/24", "192.168.240.254", "192.168.240.253"},
		{"10.0.0.0/16", "10.0.0.2", "10.0.255.254"},
		{"10.0.0.8/29", "10.0.0.10", "10.0.0.14"},
	}
	for _, tc := range cases {
		if got := agentAddr(netip.MustParsePrefix(tc.subnet), tc.bundle); got != tc.want {
			t.Errorf("agentAddr(%s, %s) = %s, want %s", tc.subnet, tc.bundle, got, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	resolve := func() []*bottle.Bottle {
		a, b, c := helloBottle(), helloBottle(), helloBottle()
		a.Metadata.Name, b.Metadata.Name, c.Metadata.Name = "a", "b", "c"
		a.Network = spec.Network{}
		b.Network = spec.Network{}
		c.Network = spec.Network{Subnet: "10.213.1.0/24", BundleIP: "10.213.1.9"}
		observed := []reconcile.Resource{
			{Provider: ProviderName, Kind: KindNetwork, Name: "foreign", Summary: map[string]string{"subnet": "10.213.0.0/24"}},
			{Provider: ProviderName, Kind: KindNetwork, Name: "bottle-b-internal", Bottle: "b", Role: bottle.RoleInternal, Managed: true,
				Summary: map[string]string{"subnet": "10.213.7.0/24"}},
		}
		if err := newProvider(nil, Options{}).Resolve([]*bottle.Bottle{a, b, c}, observed); err != nil {
			t.Fatal(err)
		}
		return []*bottle.Bottle{a, b, c}
	}
	bs := resolve()
	a, b, c := bs[0].Network, bs[1].Network, bs[2].Network
	// b keeps the subnet its network has; c keeps what it pins.
	if b.Subnet != "10.213.7.0/24" || b.BundleIP != "10.213.7.2" || c.Subnet != "10.213.1.0/24" || c.BundleIP != "10.213.1.9" {
		t.Fatalf("resolved b=%+v c=%+v", b, c)
	}
	// a gets a /24 of the pool that overlaps nothing else, with the bundle
	// at its .2; every egress range is a /28 of the pool of its own.
	all := []string{"10.213.0.0/24", b.Subnet, c.Subnet, a.Subnet, a.EgressSubnet, b.EgressSubnet, c.EgressSubnet}
	pool := netip.MustParsePrefix(bottle.DefaultSubnetPool)
	for i, x := range all {
		px := netip.MustParsePrefix(x)
		if !pool.Contains(px.Addr()) {
			t.Errorf("%s is outside the pool", x)
		}
		for _, y := range all[i+1:] {
			if px.Overlaps(netip.MustParsePrefix(y)) {
				t.Errorf("%s overlaps %s", x, y)
			}
		}
	}
	if pa := netip.MustParsePrefix(a.Subnet); pa.Bits() != 24 || a.BundleIP != spec.DefaultBundleIP(pa).String() {
		t.Errorf("a = %+v", a)
	}
	for _, e := range []string{a.EgressSubnet, b.EgressSubnet, c.EgressSubnet} {
		if netip.MustParsePrefix(e).Bits() != 28 {
			t.Errorf("egress %s is not a /28", e)
		}
	}
	// The choice is stable: the same bottles get the same ranges.
	again := resolve()
	for i := range bs {
		if !reflect.DeepEqual(bs[i].Spec.Network, again[i].Spec.Network) {
			t.Errorf("bottle %s resolved differently twice", bs[i].Metadata.Name)
		}
	}
}

// Different bottles start their search at different ranges, so that runs
// at the same time seldom race for the same one.
func TestResolveSpreadsBottles(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := range 10 {
		b := helloBottle()
		b.Metadata.Name = fmt.Sprintf("b%d", i)
		b.Network = spec.Network{}
		if err := newProvider(nil, Options{}).Resolve([]*bottle.Bottle{b}, nil); err != nil {
			t.Fatal(err)
		}
		seen[b.Network.Subnet] = true
	}
	if len(seen) < 9 {
		t.Fatalf("10 bottles resolved alone chose only %d distinct subnets", len(seen))
	}
}

func TestSecretsStayOutOfLabelsAndSummary(t *testing.T) {
	t.Parallel()
	for _, r := range translate(helloBottle(), "img", "v") {
		for k, v := range r.Summary {
			if containsSecret(v) {
				t.Errorf("%s summary %s leaks the secret", r.ID(), k)
			}
		}
		var labels map[string]string
		switch c := r.Config.(type) {
		case containerConfig:
			labels = c.Labels
		case networkConfig:
			labels = c.Labels
		}
		for k, v := range labels {
			if containsSecret(v) {
				t.Errorf("%s label %s leaks the secret", r.ID(), k)
			}
		}
	}
}

func containsSecret(s string) bool { return strings.Contains(s, "s3cret") }

func TestResolveRefusesOverlaps(t *testing.T) {
	t.Parallel()
	foreign := reconcile.Resource{Provider: ProviderName, Kind: KindNetwork, Name: "corp-vpn", Summary: map[string]string{"subnet": "192.168.240.0/20"}}
	otherBottle := reconcile.Resource{Provider: ProviderName, Kind: KindNetwork, Name: "bottle-web-internal", Bottle: "web",
		Role: bottle.RoleInternal, Managed: true, Summary: map[string]string{"subnet": "10.50.0.0/24"}}
	withSubnet := func(name, subnet string) *bottle.Bottle {
		b := helloBottle()
		b.Metadata.Name = name
		b.Network = spec.Network{Subnet: subnet}
		return b
	}
	cases := []struct {
		name     string
		bottles  []*bottle.Bottle
		observed []reconcile.Resource
		want     string
	}{
		{"a network that is not ours", []*bottle.Bottle{withSubnet("hello", "192.168.241.0/24")}, []reconcile.Resource{foreign},
			"bottle hello: spec.network.subnet 192.168.241.0/24 overlaps network corp-vpn (192.168.240.0/20), which is not bottle-apply's; choose another range"},
		{"another bottle's network", []*bottle.Bottle{withSubnet("hello", "10.50.0.0/24")}, []reconcile.Resource{otherBottle},
			"bottle hello: spec.network.subnet 10.50.0.0/24 overlaps network bottle-web-internal (10.50.0.0/24), of bottle web; choose another range"},
		{"two bottles of the run", []*bottle.Bottle{withSubnet("a", "10.60.0.0/24"), withSubnet("b", "10.60.0.0/25")}, nil,
			"bottle b: spec.network.subnet 10.60.0.0/25 overlaps the subnet 10.60.0.0/24 of bottle a; choose another range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := newProvider(nil, Options{}).Resolve(tc.bottles, tc.observed)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Resolve = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// A bottle that pins its subnet over the range its automatic egress
// network had gets a new egress range instead of a conflict forever.
func TestResolveMovesOwnNetworkOutOfTheWay(t *testing.T) {
	t.Parallel()
	b := helloBottle()
	b.Network = spec.Network{Subnet: "10.213.0.0/24", BundleIP: "10.213.0.2"}
	observed := []reconcile.Resource{
		{Provider: ProviderName, Kind: KindNetwork, Name: "bottle-hello-internal", Bottle: "hello", Role: bottle.RoleInternal, Managed: true,
			Summary: map[string]string{"subnet": "10.213.1.0/24"}},
		{Provider: ProviderName, Kind: KindNetwork, Name: "bottle-hello-egress", Bottle: "hello", Role: bottle.RoleEgress, Managed: true,
			Summary: map[string]string{"subnet": "10.213.0.16/28"}},
	}
	if err := newProvider(nil, Options{}).Resolve([]*bottle.Bottle{b}, observed); err != nil {
		t.Fatal(err)
	}
	got := netip.MustParsePrefix(b.Network.EgressSubnet)
	for _, taken := range []string{"10.213.0.0/24", "10.213.1.0/24", "10.213.0.16/28"} {
		if got.Overlaps(netip.MustParsePrefix(taken)) {
			t.Fatalf("egress subnet = %s overlaps %s; want a new range out of the pinned subnet's way", got, taken)
		}
	}
}

func TestEmptyHashesLikeAbsent(t *testing.T) {
	t.Parallel()
	absent, empty := helloBottle(), helloBottle()
	absent.Spec.Agent.Env, absent.Spec.Agent.Command, absent.Spec.Bundle.Daemons, absent.Network.AllowCIDRs = nil, nil, nil, nil
	empty.Spec.Agent.Env, empty.Spec.Agent.Command, empty.Spec.Bundle.Daemons, empty.Network.AllowCIDRs =
		map[string]string{}, []string{}, []string{}, []string{}
	a, e := byRole(translate(absent, "img", "v")), byRole(translate(empty, "img", "v"))
	for role := range a {
		if a[role].Hash != e[role].Hash {
			t.Errorf("%s: `[]`/`{}` hash differently from an absent key", role)
		}
	}
}

// secretKey digests the test secrets, as secret.LoadKey's key would.
var secretKey = []byte("0123456789abcdef0123456789abcdef")

// withSecrets gives a bottle resolved secrets, as secret.Resolve does.
func withSecrets(b *bottle.Bottle, values map[string]string) *bottle.Bottle {
	b.Spec.Agent.SecretEnv = map[string]spec.SecretSource{}
	b.Secrets = nil
	for _, name := range []string{"ANTHROPIC_API_KEY", "GITHUB_TOKEN", "Z_LAST"} {
		if v, ok := values[name]; ok {
			b.Spec.Agent.SecretEnv[name] = spec.SecretSource{ValueFrom: spec.ValueFrom{Env: name}}
			b.Secrets = append(b.Secrets, bottle.Secret{Name: name, Value: v, Digest: secret.Digest(secretKey, name, v)})
		}
	}
	return b
}

const plantedSecret = "sk-planted-7f3a9c"

func TestTranslateSecrets(t *testing.T) {
	t.Parallel()
	b := withSecrets(helloBottle(), map[string]string{"ANTHROPIC_API_KEY": plantedSecret, "Z_LAST": "zz-" + plantedSecret})
	rs := byRole(translate(b, "img", "v"))
	agent := rs[bottle.RoleAgent]
	cfg := agent.Config.(containerConfig)
	proxy := "http://192.168.240.2:8888"
	wantEnv := []string{"ANTHROPIC_API_KEY=" + plantedSecret, "API_KEY=s3cret", "FOO=bar", "HTTPS_PROXY=" + proxy, "HTTP_PROXY=" + proxy,
		"NODE_USE_ENV_PROXY=1", "NO_PROXY=localhost,127.0.0.1", "Z_LAST=zz-" + plantedSecret, "http_proxy=" + proxy, "https_proxy=" + proxy, "no_proxy=localhost,127.0.0.1"}
	if !reflect.DeepEqual(cfg.Env, wantEnv) {
		t.Errorf("agent env = %q, want %q", cfg.Env, wantEnv)
	}
	// One new input, a digest of "NAME=DIGEST" pairs.
	plain := byRole(translate(helloBottle(), "img", "v"))[bottle.RoleAgent]
	if len(agent.Inputs) != len(plain.Inputs)+1 || agent.Inputs["secretEnv"] == "" {
		t.Errorf("inputs %v, want those of %v and secretEnv", agent.Inputs, plain.Inputs)
	}
	want := reconcile.Fragment{reconcile.In("secretEnv", []string{
		"ANTHROPIC_API_KEY=" + secret.Digest(secretKey, "ANTHROPIC_API_KEY", plantedSecret),
		"Z_LAST=" + secret.Digest(secretKey, "Z_LAST", "zz-"+plantedSecret),
	})}
	if _, in := want.Hash(); agent.Inputs["secretEnv"] != in["secretEnv"] {
		t.Errorf("secretEnv input %s, want the digest of the NAME=DIGEST list (%s)", agent.Inputs["secretEnv"], in["secretEnv"])
	}
	for k, v := range plain.Inputs {
		if agent.Inputs[k] != v {
			t.Errorf("input %s changed with secrets: %s vs %s", k, agent.Inputs[k], v)
		}
	}
	// The value is nowhere but in the agent's env.
	for _, r := range rs {
		var labels map[string]string
		switch c := r.Config.(type) {
		case containerConfig:
			labels = c.Labels
			if r.Role != bottle.RoleAgent && strings.Contains(strings.Join(c.Env, " "), plantedSecret) {
				t.Errorf("%s env holds the secret", r.ID())
			}
		case networkConfig:
			labels = c.Labels
		}
		for what, m := range map[string]map[string]string{"summary": r.Summary, "labels": labels, "inputs": r.Inputs} {
			for k, v := range m {
				if strings.Contains(k+"="+v, plantedSecret) {
					t.Errorf("%s %s %s holds the secret", r.ID(), what, k)
				}
			}
		}
	}
	for _, r := range rs {
		r.Config = nil
		if s := strings.Join([]string{fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", b), fmt.Sprint(b.Spec.Agent)}, "\n"); strings.Contains(s, plantedSecret) {
			t.Errorf("printing shows the secret: %s", s)
		}
	}
}

func TestHashReasonsSecrets(t *testing.T) {
	t.Parallel()
	base := byRole(translate(withSecrets(helloBottle(), map[string]string{"ANTHROPIC_API_KEY": "v1"}), "img", "v"))
	cases := []struct {
		name   string
		values map[string]string // nil: no secretEnv at all
		want   string            // the agent's reason ("" = same hash)
	}{
		{"same value", map[string]string{"ANTHROPIC_API_KEY": "v1"}, ""},
		{"new value", map[string]string{"ANTHROPIC_API_KEY": "v2"}, "secretEnv changed"},
		{"another secret", map[string]string{"ANTHROPIC_API_KEY": "v1", "GITHUB_TOKEN": "t"}, "secretEnv changed"},
		{"renamed", map[string]string{"GITHUB_TOKEN": "v1"}, "secretEnv changed"},
		{"removed", nil, "secretEnv changed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := helloBottle()
			if tc.values != nil {
				b = withSecrets(b, tc.values)
			}
			after := byRole(translate(b, "img", "v"))
			for role, r := range after {
				old, got, want := base[role], "", ""
				if role == bottle.RoleAgent {
					want = tc.want
				}
				if r.Hash != old.Hash {
					p, err := reconcile.Diff([]reconcile.Resource{r}, []reconcile.Resource{withManaged(old)}, reconcile.Scope{Bottles: []string{"hello"}})
					if err != nil {
						t.Fatal(err)
					}
					got = p.Steps[0].Reason
				}
				if got != want {
					t.Errorf("%s: reason %q, want %q", role, got, want)
				}
			}
		})
	}
	// No secrets hash as before secrets existed: see the pinned hashes.
	none := byRole(translate(helloBottle(), "img", "v"))
	empty := helloBottle()
	empty.Spec.Agent.SecretEnv, empty.Secrets = map[string]spec.SecretSource{}, []bottle.Secret{}
	for role, r := range byRole(translate(empty, "img", "v")) {
		if r.Hash != none[role].Hash {
			t.Errorf("%s: an empty secretEnv changes the hash", role)
		}
	}
	if _, ok := none[bottle.RoleAgent].Inputs["secretEnv"]; ok {
		t.Error("secretEnv is an input without secrets")
	}
}

func TestDesiredRefusesUnresolvedSecrets(t *testing.T) {
	t.Parallel()
	b := withSecrets(helloBottle(), map[string]string{"ANTHROPIC_API_KEY": plantedSecret})
	p := newProvider(nil, Options{BundleImage: bundleRef})
	if _, err := p.Desired([]*bottle.Bottle{b}, nil); err != nil {
		t.Fatalf("resolved: %v", err)
	}
	b.Secrets = nil
	_, err := p.Desired([]*bottle.Bottle{b}, nil)
	if want := "internal: bottle hello: the secrets of spec.agent.secretEnv were not read"; err == nil || err.Error() != want {
		t.Fatalf("Desired = %v, want %s", err, want)
	}
	// A smolvm bottle's agent is not the docker provider's business.
	b.Spec.Backend = spec.BackendSmolvm
	if _, err := p.Desired([]*bottle.Bottle{b}, nil); err != nil {
		t.Fatalf("smolvm bottle: %v", err)
	}
}

// A smolvm agent reaches its bundle from the host, so its internal network
// keeps the host's address; a docker agent's does not.
func TestInternalNetworkHostAddress(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		backend string
		inhibit bool
	}{{spec.BackendDocker, true}, {spec.BackendSmolvm, false}} {
		b := helloBottle()
		b.Spec.Backend = tt.backend
		cfg := byRole(translate(b, "bottle-apply/bundle:abc", "v1"))[bottle.RoleInternal].Config.(networkConfig)
		if got := cfg.Options[OptionInhibitIPv4] == "true"; got != tt.inhibit {
			t.Errorf("%s: internal network options = %v, want inhibit_ipv4=%v", tt.backend, cfg.Options, tt.inhibit)
		}
	}
}

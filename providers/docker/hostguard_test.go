package docker

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// What the bundle must never dial goes into its environment, and a change
// in it replaces the bundle alone: the agent's hash does not hold it.
func TestTranslateHostChangesTheBundleAlone(t *testing.T) {
	t.Parallel()
	b := helloBottle()
	b.Host = bottle.Host{Denied: []string{"10.213.0.0/16"}, Addrs: []string{"172.17.0.1", "192.0.2.2", "fd00::2"}}
	rs := byRole(translate(b, "img", "v"))
	env := rs[bottle.RoleBundle].Config.(containerConfig).Env
	for _, want := range []string{
		"BOTTLE_DENY_CIDRS=10.213.0.0/16,172.17.0.1/32,192.0.2.2/32,fd00::2/128",
		"BOTTLE_EGRESS_SUBNET=10.213.0.16/28",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("bundle env lacks %q:\n%s", want, strings.Join(env, "\n"))
		}
	}
	if !slices.IsSorted(env) {
		t.Errorf("bundle env is not sorted: %q", env)
	}

	moved := helloBottle()
	moved.Host = bottle.Host{Denied: b.Host.Denied, Addrs: []string{"172.17.0.1", "192.0.2.3", "fd00::2"}}
	after := byRole(translate(moved, "img", "v"))
	if after[bottle.RoleBundle].Hash == rs[bottle.RoleBundle].Hash {
		t.Fatal("a new host address left the bundle's hash as it was: the bundle would keep refusing the old one only")
	}
	if after[bottle.RoleAgent].Hash != rs[bottle.RoleAgent].Hash {
		t.Fatal("a new host address changed the agent's hash: the agent would be replaced for what only the bundle knows")
	}
	if got := changedKeys(rs[bottle.RoleBundle].Inputs, after[bottle.RoleBundle].Inputs); !slices.Equal(got, []string{"hostAddresses"}) {
		t.Fatalf("changed inputs %q, want hostAddresses: the plan says why", got)
	}

	// A bottle resolved without host knowledge (a provider used alone)
	// keeps its hash from before.
	plain := byRole(translate(helloBottle(), "img", "v"))
	for _, e := range plain[bottle.RoleBundle].Config.(containerConfig).Env {
		if strings.HasPrefix(e, "BOTTLE_DENY_CIDRS=") {
			t.Fatalf("a bottle with no host knowledge got %s", e)
		}
	}
}

func changedKeys(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Resolve gives every bottle the pool and the host's addresses, and the
// guard's rule every range a spec sets outside the pool.
func TestResolveHost(t *testing.T) {
	t.Parallel()
	p := newProvider(newFakeEngine(), Options{SubnetPool: "10.213.0.0/16"})
	p.host.known, p.host.addrs = true, []netip.Addr{netip.MustParseAddr("172.17.0.1"), netip.MustParseAddr("192.0.2.2")}
	inPool, outside := helloBottle(), helloBottle()
	inPool.Network = outside.Network
	inPool.Network.Subnet, inPool.Network.BundleIP, inPool.Network.EgressSubnet = "", "", ""
	outside.Metadata.Name = "outside"
	if err := p.Resolve([]*bottle.Bottle{inPool, outside}, nil); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*bottle.Bottle{inPool, outside} {
		if !slices.Equal(b.Host.Denied, []string{"10.213.0.0/16"}) || !slices.Equal(b.Host.Addrs, []string{"172.17.0.1", "192.0.2.2"}) {
			t.Errorf("bottle %s: host %+v", b.Metadata.Name, b.Host)
		}
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.213.0.0/16"), netip.MustParsePrefix("192.168.240.0/24")}
	if !slices.Equal(p.host.pools, want) {
		t.Fatalf("guarded pools %v, want %v (10.213.0.16/28 is in the pool)", p.host.pools, want)
	}
}

func TestParseHostReport(t *testing.T) {
	t.Parallel()
	got, err := parseHostReport([]byte(`{"addrs":["192.0.2.2","172.17.0.1","::ffff:10.0.0.1","172.17.0.1","172.18.0.1"],"bridges":["172.18.0.1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("172.17.0.1"), netip.MustParseAddr("192.0.2.2")}
	if !slices.Equal(got, want) {
		t.Fatalf("parseHostReport = %v, want %v", got, want)
	}
	for _, bad := range []string{`not json`, `{"addrs":["nope"]}`} {
		if _, err := parseHostReport([]byte(bad)); err == nil {
			t.Errorf("parseHostReport(%q) succeeded", bad)
		}
	}
	pools := []netip.Prefix{netip.MustParsePrefix("10.213.0.0/16")}
	kept := outside([]netip.Addr{netip.MustParseAddr("10.213.4.1"), netip.MustParseAddr("192.0.2.2")}, pools)
	if !slices.Equal(kept, []netip.Addr{netip.MustParseAddr("192.0.2.2")}) {
		t.Fatalf("outside kept %v: a bottle's gateway would change every bundle when a bottle comes or goes", kept)
	}
}

// A subnet that holds the whole pool is guarded too: starting at the
// pool's address does not make it part of the pool.
func TestResolveHostWiderSubnet(t *testing.T) {
	t.Parallel()
	p := newProvider(newFakeEngine(), Options{SubnetPool: "10.213.0.0/20"})
	b := helloBottle()
	b.Network.Subnet, b.Network.BundleIP = "10.213.0.0/16", "10.213.0.2"
	if err := p.Resolve([]*bottle.Bottle{b}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(p.host.pools, netip.MustParsePrefix("10.213.0.0/16")) {
		t.Fatalf("guarded pools %v lack the spec's 10.213.0.0/16", p.host.pools)
	}
}

type memHostCache struct {
	addrs []netip.Addr
	ok    bool
	saved int
}

func (c *memHostCache) LoadHostAddrs() ([]netip.Addr, bool) { return c.addrs, c.ok }
func (c *memHostCache) SaveHostAddrs([]netip.Addr)          { c.saved++ }

// LearnCachedHost reads the cache and nothing else: no engine call, no
// container, however it ends.
func TestLearnCachedHost(t *testing.T) {
	t.Parallel()
	addr := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		name  string
		cache *memHostCache
		want  bool
		addrs []netip.Addr
	}{
		{name: "cached", cache: &memHostCache{addrs: []netip.Addr{addr}, ok: true}, want: true, addrs: []netip.Addr{addr}},
		{name: "not cached", cache: &memHostCache{}},
		{name: "no cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			o := Options{}
			if tt.cache != nil {
				o.HostCache = tt.cache
			}
			p := newProvider(f, o)
			if got := p.LearnCachedHost(); got != tt.want {
				t.Errorf("LearnCachedHost = %v, want %v", got, tt.want)
			}
			if got := p.HostAddrs(); !slices.Equal(got, tt.addrs) {
				t.Errorf("HostAddrs = %v, want %v", got, tt.addrs)
			}
			if calls := f.callLog(); len(calls) != 0 {
				t.Errorf("engine calls: %q", calls)
			}
		})
	}
}

package docker

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Resolve fills in the subnets and bundle IP of bottles that do not set
// them: a bottle whose network exists keeps its subnet; a new one gets the
// first free range of the pool, one that overlaps no existing network nor
// another bottle's choice in this run. Egress networks come from the pool
// too, so that bottles never exhaust the engine's own default pools.
func (p *Provider) Resolve(bottles []*bottle.Bottle, observed []reconcile.Resource) error {
	bottles = onEngine(bottles)
	pool, err := bottle.ParsePrefix(p.opts.SubnetPool)
	if err != nil {
		return fmt.Errorf("subnet pool %q: %w", p.opts.SubnetPool, err)
	}
	type netKey struct{ bottleName, role string }
	type taken struct {
		key    netKey
		name   string // the engine's network name
		subnet netip.Prefix
	}
	var used []netip.Prefix
	var existing []taken
	current := map[netKey]netip.Prefix{}
	for i := range observed {
		o := &observed[i]
		if o.Provider != ProviderName || o.Kind != KindNetwork {
			continue
		}
		sub, err := bottle.ParsePrefix(o.Summary["subnet"])
		if err != nil {
			continue
		}
		used = append(used, sub)
		k := netKey{}
		if o.Managed {
			k = netKey{o.Bottle, o.Role}
			current[k] = sub
		}
		existing = append(existing, taken{k, o.Name, sub})
	}
	// Subnets the spec sets must overlap nothing that stays: another
	// bottle's network, a network that is not bottle-apply's, or another
	// bottle's subnet in this run. Said now, before anything changes.
	var explicit []taken
	for _, b := range bottles {
		for _, e := range []struct {
			role, field, value string
		}{{bottle.RoleInternal, "subnet", b.Network.Subnet}, {bottle.RoleEgress, "egressSubnet", b.Network.EgressSubnet}} {
			sub, err := bottle.ParsePrefix(e.value)
			if err != nil {
				continue
			}
			key := netKey{b.Metadata.Name, e.role}
			for _, x := range existing {
				if x.key.bottleName != key.bottleName && x.subnet.Overlaps(sub) {
					owner := "which is not bottle-apply's"
					if x.key.bottleName != "" {
						owner = "of bottle " + x.key.bottleName
					}
					return fmt.Errorf("bottle %s: spec.network.%s %s overlaps network %s (%s), %s; choose another range",
						b.Metadata.Name, e.field, sub, x.name, x.subnet, owner)
				}
			}
			for _, x := range explicit {
				if x.key.bottleName != key.bottleName && x.subnet.Overlaps(sub) {
					return fmt.Errorf("bottle %s: spec.network.%s %s overlaps the subnet %s of bottle %s; choose another range",
						b.Metadata.Name, e.field, sub, x.subnet, x.key.bottleName)
				}
			}
			explicit = append(explicit, taken{key, "", sub})
			used = append(used, sub)
		}
	}
	pick := func(b *bottle.Bottle, role string, bits int) (string, error) {
		key := netKey{b.Metadata.Name, role}
		sub, ok := current[key]
		for _, x := range explicit {
			if ok && x.key != key && x.subnet.Overlaps(sub) {
				ok = false // its range is wanted elsewhere now: move it
			}
		}
		if !ok {
			sub, ok = bottle.FreeSubnet(pool, bits, used, bottle.Spread(b.Metadata.Name+"/"+role))
			if !ok {
				return "", fmt.Errorf("bottle %s: no free /%d left in the subnet pool %s; set spec.network.subnet and spec.network.egressSubnet, or choose another pool with --subnet-pool",
					b.Metadata.Name, bits, pool)
			}
			used = append(used, sub)
		}
		return sub.String(), nil
	}
	defer p.resolveHost(bottles, pool)
	for _, b := range bottles {
		n := &b.Network
		if n.Subnet == "" {
			if n.Subnet, err = pick(b, bottle.RoleInternal, bottle.InternalBits); err != nil {
				return err
			}
			n.BundleIP = spec.DefaultBundleIP(netip.MustParsePrefix(n.Subnet)).String()
		}
		if n.EgressSubnet == "" {
			if n.EgressSubnet, err = pick(b, bottle.RoleEgress, bottle.EgressBits); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolveHost tells each bottle what its bundle must never dial: the
// subnet pool and the host's addresses as this run knows them. The host
// guard's rule covers the pool and every subnet a spec sets outside it.
func (p *Provider) resolveHost(bottles []*bottle.Bottle, pool netip.Prefix) {
	p.host.mu.Lock()
	defer p.host.mu.Unlock()
	addPool := func(r netip.Prefix) {
		if !(pool.Bits() <= r.Bits() && pool.Contains(r.Addr())) && !slices.Contains(p.host.pools, r) {
			p.host.pools = append(p.host.pools, r)
		}
	}
	if !slices.Contains(p.host.pools, pool) {
		p.host.pools = append([]netip.Prefix{pool}, p.host.pools...)
	}
	addrs := addrStrings(p.host.addrs)
	for _, b := range bottles {
		for _, s := range []string{b.Network.Subnet, b.Network.EgressSubnet} {
			if sub, err := bottle.ParsePrefix(s); err == nil {
				addPool(sub)
			}
		}
		b.Host = bottle.Host{Denied: []string{pool.String()}, Addrs: addrs}
	}
}

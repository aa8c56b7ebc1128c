package docker

import (
	"fmt"
	"net/netip"

	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// DefaultSubnetPool is where bottles without a subnet get theirs: one /24
// each, the first that overlaps no network the engine has.
const DefaultSubnetPool = "10.213.0.0/16"

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	return p.Masked(), nil
}

// Resolve fills in the subnet and bundle IP of bottles that do not set them:
// a bottle whose network exists keeps its subnet; a new one gets the first
// /24 of the pool that overlaps no existing network nor another bottle's
// choice in this run.
func (p *Provider) Resolve(bottles []*spec.Bottle, observed []reconcile.Resource) error {
	pool, err := parsePrefix(p.opts.SubnetPool)
	if err != nil {
		return fmt.Errorf("subnet pool %q: %w", p.opts.SubnetPool, err)
	}
	var used []netip.Prefix
	current := map[string]netip.Prefix{}
	for i := range observed {
		o := &observed[i]
		if o.Provider != ProviderName || o.Kind != KindNetwork {
			continue
		}
		sub, err := parsePrefix(o.Summary["subnet"])
		if err != nil {
			continue
		}
		used = append(used, sub)
		if o.Managed && o.Role == RoleInternal {
			current[o.Bottle] = sub
		}
	}
	for _, b := range bottles {
		if b.Spec.Network.Subnet != "" {
			if sub, err := parsePrefix(b.Spec.Network.Subnet); err == nil {
				used = append(used, sub)
			}
		}
	}
	for _, b := range bottles {
		n := &b.Spec.Network
		if n.Subnet != "" {
			continue
		}
		sub, ok := current[b.Metadata.Name]
		if !ok {
			sub, ok = freeSubnet(pool, used)
			if !ok {
				return fmt.Errorf("bottle %s: no free /24 left in the subnet pool %s; set spec.network.subnet or choose another pool with --subnet-pool",
					b.Metadata.Name, pool)
			}
			used = append(used, sub)
		}
		n.Subnet = sub.String()
		n.BundleIP = spec.DefaultBundleIP(sub).String()
	}
	return nil
}

// freeSubnet returns the first /24 in pool that overlaps none of used.
func freeSubnet(pool netip.Prefix, used []netip.Prefix) (netip.Prefix, bool) {
	if pool.Bits() > 24 || !pool.Addr().Is4() {
		return netip.Prefix{}, false
	}
	a := pool.Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8
	count := uint32(1) << (24 - pool.Bits())
next:
	for i := uint32(0); i < count; i++ {
		v := base + i<<8
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24)
		for _, u := range used {
			if u.Overlaps(cand) {
				continue next
			}
		}
		return cand, true
	}
	return netip.Prefix{}, false
}

package docker

import (
	"fmt"
	"hash/fnv"
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

// Subnet sizes taken from the pool.
const (
	internalBits = 24
	egressBits   = 28 // the bundle and the gateway need two addresses
)

// Resolve fills in the subnets and bundle IP of bottles that do not set
// them: a bottle whose network exists keeps its subnet; a new one gets the
// first free range of the pool, one that overlaps no existing network nor
// another bottle's choice in this run. Egress networks come from the pool
// too, so that bottles never exhaust the engine's own default pools.
func (p *Provider) Resolve(bottles []*spec.Bottle, observed []reconcile.Resource) error {
	pool, err := parsePrefix(p.opts.SubnetPool)
	if err != nil {
		return fmt.Errorf("subnet pool %q: %w", p.opts.SubnetPool, err)
	}
	type netKey struct{ bottle, role string }
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
		sub, err := parsePrefix(o.Summary["subnet"])
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
		}{{RoleInternal, "subnet", b.Spec.Network.Subnet}, {RoleEgress, "egressSubnet", b.Spec.Network.EgressSubnet}} {
			sub, err := parsePrefix(e.value)
			if err != nil {
				continue
			}
			key := netKey{b.Metadata.Name, e.role}
			for _, x := range existing {
				if x.key.bottle != key.bottle && x.subnet.Overlaps(sub) {
					owner := "which is not bottle-apply's"
					if x.key.bottle != "" {
						owner = "of bottle " + x.key.bottle
					}
					return fmt.Errorf("bottle %s: spec.network.%s %s overlaps network %s (%s), %s; choose another range",
						b.Metadata.Name, e.field, sub, x.name, x.subnet, owner)
				}
			}
			for _, x := range explicit {
				if x.key.bottle != key.bottle && x.subnet.Overlaps(sub) {
					return fmt.Errorf("bottle %s: spec.network.%s %s overlaps the subnet %s of bottle %s; choose another range",
						b.Metadata.Name, e.field, sub, x.subnet, x.key.bottle)
				}
			}
			explicit = append(explicit, taken{key, "", sub})
			used = append(used, sub)
		}
	}
	pick := func(b *spec.Bottle, role string, bits int) (string, error) {
		key := netKey{b.Metadata.Name, role}
		sub, ok := current[key]
		for _, x := range explicit {
			if ok && x.key != key && x.subnet.Overlaps(sub) {
				ok = false // its range is wanted elsewhere now: move it
			}
		}
		if !ok {
			sub, ok = freeSubnet(pool, bits, used, spread(b.Metadata.Name+"/"+role))
			if !ok {
				return "", fmt.Errorf("bottle %s: no free /%d left in the subnet pool %s; set spec.network.subnet and spec.network.egressSubnet, or choose another pool with --subnet-pool",
					b.Metadata.Name, bits, pool)
			}
			used = append(used, sub)
		}
		return sub.String(), nil
	}
	for _, b := range bottles {
		n := &b.Spec.Network
		if n.Subnet == "" {
			if n.Subnet, err = pick(b, RoleInternal, internalBits); err != nil {
				return err
			}
			n.BundleIP = spec.DefaultBundleIP(netip.MustParsePrefix(n.Subnet)).String()
		}
		if n.EgressSubnet == "" {
			if n.EgressSubnet, err = pick(b, RoleEgress, egressBits); err != nil {
				return err
			}
		}
	}
	return nil
}

// spread is where a bottle's search for a free range starts: a hash of its
// name, so that runs of different bottles at the same time do not all race
// for the pool's first free range, and a bottle's choice is stable.
func spread(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// freeSubnet returns a prefix of the given length in pool that overlaps
// none of used: the first such from the start-th range of the pool (modulo
// their number), wrapping around.
func freeSubnet(pool netip.Prefix, bits int, used []netip.Prefix, start uint32) (netip.Prefix, bool) {
	if pool.Bits() > bits || !pool.Addr().Is4() || bits > 30 {
		return netip.Prefix{}, false
	}
	a := pool.Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	step := uint32(1) << (32 - bits)
	count := uint32(1) << (bits - pool.Bits())
next:
	for n := uint32(0); n < count; n++ {
		i := (start + n) % count
		v := base + i*step
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
		for _, u := range used {
			if u.Overlaps(cand) {
				continue next
			}
		}
		return cand, true
	}
	return netip.Prefix{}, false
}

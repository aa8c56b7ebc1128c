package bottle

import (
	"hash/fnv"
	"net/netip"
)

// DefaultSubnetPool is where bottles without a subnet get theirs: one /24
// each, the first that overlaps no network the engine has.
const DefaultSubnetPool = "10.213.0.0/16"

// ParsePrefix parses a CIDR and masks it: 10.0.0.5/24 is 10.0.0.0/24.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	return p.Masked(), nil
}

// Subnet sizes taken from the pool.
const (
	InternalBits = 24
	EgressBits   = 28 // the bundle and the gateway need two addresses
)

// Spread is where a bottle's search for a free range starts: a hash of its
// name, so that runs of different bottles at the same time do not all race
// for the pool's first free range, and a bottle's choice is stable.
func Spread(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// FreeSubnet returns a prefix of the given length in pool that overlaps
// none of used: the first such from the start-th range of the pool (modulo
// their number), wrapping around.
func FreeSubnet(pool netip.Prefix, bits int, used []netip.Prefix, start uint32) (netip.Prefix, bool) {
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

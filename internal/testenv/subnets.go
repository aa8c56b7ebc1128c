package testenv

import (
	"net/netip"
)

// The ranges the tests take the subnets they name, or the pools they pass
// with --subnet-pool, from. go test runs the packages at the same time
// against one engine, and a bottle whose spec.network.subnet overlaps a
// network that exists fails ("spec.network.subnet … overlaps network
// bottle-rel-…-internal"): so each package has ranges of its own, and no
// two of these overlap each other nor the default pool 10.213.0.0/16,
// where the bottles with automatic subnets of every package take theirs,
// as users' bottles do (TestSubnetRangesAreDisjoint).
const (
	// SubnetsKillPoints: cmd/bottle-apply, TestE2EKillAtEveryCall, one
	// /23 pool a scenario.
	SubnetsKillPoints = "10.214.0.0/16"
	// SubnetsConcurrentApplies: cmd/bottle-apply,
	// TestE2EConcurrentAppliesOfTenSpecs, the pool the ten applies race for.
	SubnetsConcurrentApplies = "10.215.0.0/16"
	// SubnetsDockerLifecycle: providers/docker, TestIntegrationLifecycle,
	// the subnet it changes a bottle to.
	SubnetsDockerLifecycle = "10.216.0.0/16"
	// SubnetsDockerReplace: providers/docker,
	// TestIntegrationReplaceSafety, the subnet of its bottle.
	SubnetsDockerReplace = "10.217.0.0/16"
	// SubnetsHostGuard: cmd/bottle-apply, TestE2EHostNeverDialled, the
	// bridge it makes after a bundle and the address it gives the host.
	SubnetsHostGuard = "10.218.0.0/16"
)

// subnetRanges are the ranges above by name, for the test that keeps them
// apart.
var subnetRanges = map[string]string{
	"SubnetsKillPoints":        SubnetsKillPoints,
	"SubnetsConcurrentApplies": SubnetsConcurrentApplies,
	"SubnetsDockerLifecycle":   SubnetsDockerLifecycle,
	"SubnetsDockerReplace":     SubnetsDockerReplace,
	"SubnetsHostGuard":         SubnetsHostGuard,
}

// NthSubnet returns the n-th (from 0) prefix of length bits in the range
// r, or "" when r holds fewer.
func NthSubnet(r string, bits, n int) string {
	p := netip.MustParsePrefix(r).Masked()
	if !p.Addr().Is4() || bits < p.Bits() || bits > 32 || n < 0 || n >= 1<<(bits-p.Bits()) {
		return ""
	}
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n) << (32 - bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits).String()
}

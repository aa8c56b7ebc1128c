package spec

import "net/netip"

// Default fills in what a valid bottle leaves out: the docker backend, and
// the bundle's address when a subnet is given (the subnet's second host).
// The subnet itself stays empty when not given: the provider picks one.
// Default is idempotent.
func (b *Bottle) Default() {
	if b.Spec.Backend == "" {
		b.Spec.Backend = BackendDocker
	}
	n := &b.Spec.Network
	if p, err := netip.ParsePrefix(n.Subnet); err == nil && n.BundleIP == "" {
		n.BundleIP = DefaultBundleIP(p).String()
	}
}

// MemoryLimit is the agent's memory in MiB: spec.agent.memory, else
// DefaultAgentMemory. Unlike Default, it leaves the spec as written, so
// that a spec without memory hashes as it always did.
func (a *Agent) MemoryLimit() int {
	if a.Memory != 0 {
		return a.Memory
	}
	return DefaultAgentMemory
}

// PidsLimit is the agent's process limit: spec.agent.pids, else
// DefaultAgentPids.
func (a *Agent) PidsLimit() int {
	if a.Pids != 0 {
		return a.Pids
	}
	return DefaultAgentPids
}

// GatewayIP returns the first host address of p (192.168.240.1 for
// 192.168.240.0/24), which bottle networks use as their gateway. It returns
// the zero Addr for an invalid p.
func GatewayIP(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

// DefaultBundleIP returns the second host address of p (192.168.240.2 for
// 192.168.240.0/24), the bundle's address unless the spec sets bundleIP. It
// returns the zero Addr for an invalid p.
func DefaultBundleIP(p netip.Prefix) netip.Addr {
	return GatewayIP(p).Next()
}

//go:build linux

package hostguard

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// userData tags each rule, so that a later run knows which pools are
// guarded already.
const (
	tagEstablished = "bottle-apply established"
	tagPool        = "bottle-apply pool "
)

// Install makes sure that the guard's chain drops every new connection
// from each pool to an address of the host, and returns the pools that
// were not guarded before. One nftables transaction flushes the chain and
// writes it anew with the pools already there and these: the rules never
// have a gap.
//
// The chain hooks prerouting at the mangle priority: after conntrack, so
// that replies to connections the host opened (to a smolvm agent's
// bundle) pass, and before the engine's destination NAT, so that a port
// the host publishes is dropped too.
func Install(pools []netip.Prefix) ([]netip.Prefix, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open netlink to the firewall: %w", err)
	}
	table := &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
	policy := nftables.ChainPolicyAccept
	chain := &nftables.Chain{Name: Chain, Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &policy}
	var have []netip.Prefix
	if rules, err := c.GetRules(table, chain); err == nil {
		have = guardedPools(rules)
	}
	var added []netip.Prefix
	all := slices.Clone(have)
	for _, p := range pools {
		if !slices.Contains(all, p) {
			all = append(all, p)
			added = append(added, p)
		}
	}
	c.AddTable(table)
	c.AddChain(chain)
	c.FlushChain(chain)
	for _, r := range Rules(all) {
		r.Table, r.Chain = table, chain
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("install the firewall rule on the engine's host (nftables table ip %s): %w", Table, err)
	}
	return added, nil
}

// guardedPools reads back the pools of the rules a guard wrote.
func guardedPools(rules []*nftables.Rule) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range rules {
		s, ok := strings.CutPrefix(string(r.UserData), tagPool)
		if !ok {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// Rules are the chain's rules, in order (without table and chain):
//
//	ct state established,related accept
//	ip saddr POOL fib daddr type local counter drop   (one per pool)
func Rules(pools []netip.Prefix) []*nftables.Rule {
	zero := []byte{0, 0, 0, 0}
	out := []*nftables.Rule{{
		UserData: []byte(tagEstablished),
		Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: zero},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
	}}
	for _, p := range pools {
		p = p.Masked()
		mask := make([]byte, 4)
		for i := range p.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		network := p.Addr().As4()
		out = append(out, &nftables.Rule{
			UserData: []byte(tagPool + p.String()),
			Exprs: []expr.Any{
				// ip saddr
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: zero},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: network[:]},
				// fib daddr type local
				&expr.Fib{Register: 1, ResultADDRTYPE: true, FlagDADDR: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			},
		})
	}
	return out
}

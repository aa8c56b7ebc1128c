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

// Install makes sure that the guard's chains drop every new connection
// from each pool to the host, and returns the pools that were not guarded
// before. It only adds: the rules of another run, made at the same time
// for other pools, stay (two runs may add the same rule twice; a rule
// twice drops the same).
//
// Two chains, each its own rules: prerouting at the mangle priority, after
// conntrack and before the engine's destination NAT, drops what goes to
// an address of the host (ports the engine publishes on the host
// included); input, after every NAT, drops what is delivered to the host
// whatever its first destination (an address that NAT turns into the
// host's, a broadcast). Both let replies to connections the host opened
// through (a smolvm agent's, to its bundle).
func Install(pools []netip.Prefix) ([]netip.Prefix, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open netlink to the firewall: %w", err)
	}
	table := &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
	c.AddTable(table)
	var added []netip.Prefix
	for _, h := range hooks {
		policy := nftables.ChainPolicyAccept
		chain := &nftables.Chain{Name: h.chain, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: h.hook, Priority: h.priority, Policy: &policy}
		c.AddChain(chain)
		var have []*nftables.Rule
		if rules, err := c.GetRules(table, chain); err == nil {
			have = rules
		}
		if !slices.ContainsFunc(have, func(r *nftables.Rule) bool { return string(r.UserData) == tagEstablished }) {
			r := establishedRule()
			r.Table, r.Chain = table, chain
			c.InsertRule(r) // first: replies pass before any drop
		}
		guarded := guardedPools(have)
		for _, p := range pools {
			if slices.Contains(guarded, p) {
				continue
			}
			r := poolRule(p, h.local)
			r.Table, r.Chain = table, chain
			c.AddRule(r)
			if h.chain == Chain && !slices.Contains(added, p) {
				added = append(added, p)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("install the firewall rule on the engine's host (nftables table ip %s): %w", Table, err)
	}
	return added, nil
}

// Uninstall removes the guard's table, and so every pool's rules; a
// table that is not there is no error.
func Uninstall() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open netlink to the firewall: %w", err)
	}
	table := &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
	if _, err := c.ListTableOfFamily(Table, nftables.TableFamilyIPv4); err != nil {
		return nil
	}
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove the firewall rules (nftables table ip %s): %w", Table, err)
	}
	return nil
}

// InputChain is the guard's chain on the input hook.
const InputChain = "host_guard_input"

// hooks are the guard's chains: where they hook, and whether their drop
// asks that the destination be an address of the host (on input it is,
// by definition).
var hooks = []struct {
	chain    string
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	local    bool
}{
	{Chain, nftables.ChainHookPrerouting, nftables.ChainPriorityMangle, true},
	{InputChain, nftables.ChainHookInput, nftables.ChainPriorityFilter, false},
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

// Rules are the prerouting chain's rules, in order (without table and
// chain):
//
//	ct state established,related accept
//	ip saddr POOL fib daddr type local counter drop   (one per pool)
//
// The input chain's are the same without the fib match.
func Rules(pools []netip.Prefix) []*nftables.Rule {
	out := []*nftables.Rule{establishedRule()}
	for _, p := range pools {
		out = append(out, poolRule(p, true))
	}
	return out
}

func establishedRule() *nftables.Rule {
	zero := []byte{0, 0, 0, 0}
	return &nftables.Rule{
		UserData: []byte(tagEstablished),
		Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: zero},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
	}
}

// poolRule drops what p sends, to an address of the host when local.
func poolRule(p netip.Prefix, local bool) *nftables.Rule {
	zero := []byte{0, 0, 0, 0}
	p = p.Masked()
	mask := make([]byte, 4)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	network := p.Addr().As4()
	exprs := []expr.Any{
		// ip saddr
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: zero},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: network[:]},
	}
	if local {
		exprs = append(exprs,
			// fib daddr type local
			&expr.Fib{Register: 1, ResultADDRTYPE: true, FlagDADDR: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		)
	}
	exprs = append(exprs, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	return &nftables.Rule{UserData: []byte(tagPool + p.String()), Exprs: exprs}
}

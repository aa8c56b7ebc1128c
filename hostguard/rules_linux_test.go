//go:build linux

package hostguard

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func TestRulesMatchThePools(t *testing.T) {
	pools := []netip.Prefix{netip.MustParsePrefix("10.213.0.0/16"), netip.MustParsePrefix("192.168.240.0/20")}
	rules := Rules(pools)
	if len(rules) != 3 {
		t.Fatalf("%d rules, want the established rule and one a pool", len(rules))
	}
	if string(rules[0].UserData) != tagEstablished {
		t.Fatalf("first rule is %q: replies must pass before any drop", rules[0].UserData)
	}
	if v, ok := rules[0].Exprs[len(rules[0].Exprs)-1].(*expr.Verdict); !ok || v.Kind != expr.VerdictAccept {
		t.Fatalf("the established rule ends in %#v, want accept", rules[0].Exprs[len(rules[0].Exprs)-1])
	}
	for i, tt := range []struct{ mask, network []byte }{
		{[]byte{255, 255, 0, 0}, []byte{10, 213, 0, 0}},
		{[]byte{255, 255, 240, 0}, []byte{192, 168, 240, 0}},
	} {
		r := rules[i+1]
		bw, ok1 := r.Exprs[1].(*expr.Bitwise)
		cmp, ok2 := r.Exprs[2].(*expr.Cmp)
		fib, ok3 := r.Exprs[3].(*expr.Fib)
		v, ok4 := r.Exprs[len(r.Exprs)-1].(*expr.Verdict)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			t.Fatalf("rule %d has expressions %#v", i+1, r.Exprs)
		}
		if !bytes.Equal(bw.Mask, tt.mask) || !bytes.Equal(cmp.Data, tt.network) {
			t.Errorf("rule %d matches %v/%v, want %v/%v", i+1, cmp.Data, bw.Mask, tt.network, tt.mask)
		}
		if !fib.FlagDADDR || !fib.ResultADDRTYPE || v.Kind != expr.VerdictDrop {
			t.Errorf("rule %d: fib %+v verdict %v, want a drop of local destinations", i+1, fib, v.Kind)
		}
	}
	if got := guardedPools(rules); !slices.Equal(got, pools) {
		t.Fatalf("guardedPools read back %v, want %v", got, pools)
	}
}

// TestInstallInANetworkNamespace installs the rules for real, in a network
// namespace of its own (root only; CI runs as root), twice: the second run
// adds nothing and keeps the first one's pool.
func TestInstallInANetworkNamespace(t *testing.T) {
	if os.Getenv("HOSTGUARD_IN_NETNS") == "1" {
		installInNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: this test must run")
		}
		t.Skip("needs root for a network namespace of its own")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	cmd := exec.Command(unshare, "-n", os.Args[0], "-test.run=^TestInstallInANetworkNamespace$", "-test.v")
	cmd.Env = append(os.Environ(), "HOSTGUARD_IN_NETNS=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("in a new network namespace: %v\n%s", err, out)
	}
}

func installInNetns(t *testing.T) {
	a, b := netip.MustParsePrefix("10.213.0.0/16"), netip.MustParsePrefix("10.99.0.0/16")
	added, err := Install([]netip.Prefix{a})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added, []netip.Prefix{a}) {
		t.Fatalf("first install added %v, want %v", added, a)
	}
	if added, err = Install([]netip.Prefix{a, b}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added, []netip.Prefix{b}) {
		t.Fatalf("second install added %v, want only %v", added, b)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
	rules, err := c.GetRules(table, &nftables.Chain{Name: Chain, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 3 || string(rules[0].UserData) != tagEstablished {
		t.Fatalf("the chain holds %d rules (first %q), want established then the two pools", len(rules), rules[0].UserData)
	}
	if got := guardedPools(rules); !slices.Equal(got, []netip.Prefix{a, b}) {
		t.Fatalf("guarded pools %v, want %v", got, []netip.Prefix{a, b})
	}
	// The input chain: the same pools, whatever the destination (NAT
	// made it the host's, or a broadcast).
	input, err := c.GetRules(table, &nftables.Chain{Name: InputChain, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if len(input) != 3 || string(input[0].UserData) != tagEstablished || !slices.Equal(guardedPools(input), []netip.Prefix{a, b}) {
		t.Fatalf("the input chain holds %d rules (pools %v), want established then the two pools", len(input), guardedPools(input))
	}
	for _, r := range input[1:] {
		if slices.ContainsFunc(r.Exprs, func(e expr.Any) bool { _, ok := e.(*expr.Fib); return ok }) {
			t.Fatalf("an input rule asks for a local destination: %#v", r.Exprs)
		}
	}
	// A run at the same time, for another pool, loses no one's rule.
	other := netip.MustParsePrefix("10.98.0.0/16")
	if _, err := Install([]netip.Prefix{other}); err != nil {
		t.Fatal(err)
	}
	if rules, err = c.GetRules(table, &nftables.Chain{Name: Chain, Table: table}); err != nil {
		t.Fatal(err)
	}
	if got := guardedPools(rules); !slices.Equal(got, []netip.Prefix{a, b, other}) {
		t.Fatalf("after a run for %s alone, guarded pools %v", other, got)
	}
	// The engine's bridges are told apart in the report: they come and go.
	for _, args := range [][]string{
		{"link", "add", "br-bt0", "type", "bridge"}, {"addr", "add", "10.99.1.1/24", "dev", "br-bt0"},
		{"link", "add", "bt1", "type", "bridge"}, {"addr", "add", "10.99.2.1/24", "dev", "bt1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %q: %v\n%s", args, err, out)
		}
	}
	var out, errOut bytes.Buffer
	if code := Main(nil, &out, &errOut); code != 0 {
		t.Fatalf("Main() = %d: %s", code, errOut.String())
	}
	r, err := ParseReport(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Addrs, "10.99.1.1") || !slices.Contains(r.Addrs, "10.99.2.1") || !slices.Equal(r.Bridges, []string{"10.99.1.1"}) {
		t.Fatalf("report %+v: want both addresses, and only br-bt0's among the engine's bridges", r)
	}
	defer func() {
		// -uninstall removes the table, and is no error when it is gone.
		for range 2 {
			var out, errOut bytes.Buffer
			if code := Main([]string{"-uninstall"}, &out, &errOut); code != 0 {
				t.Fatalf("-uninstall = %d: %s", code, errOut.String())
			}
		}
		if _, err := c.ListTableOfFamily(Table, nftables.TableFamilyIPv4); err == nil {
			t.Fatal("the table is still there after -uninstall")
		}
	}()
	chain, err := c.ListChain(table, Chain)
	if err != nil {
		t.Fatal(err)
	}
	if chain.Hooknum == nil || *chain.Hooknum != *nftables.ChainHookPrerouting || chain.Priority == nil || *chain.Priority != *nftables.ChainPriorityMangle {
		t.Fatalf("chain %+v, want prerouting at the mangle priority", chain)
	}
}

package testenv

import (
	"net/netip"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// TestSubnetRangesAreDisjoint keeps the tests' subnet ranges apart from
// each other and from the default pool: packages that run at the same
// time never name subnets that overlap.
func TestSubnetRangesAreDisjoint(t *testing.T) {
	ranges := map[string]netip.Prefix{"bottle.DefaultSubnetPool": netip.MustParsePrefix(bottle.DefaultSubnetPool)}
	for name, r := range subnetRanges {
		p, err := netip.ParsePrefix(r)
		if err != nil || p != p.Masked() {
			t.Fatalf("%s = %q is not a network prefix (%v)", name, r, err)
		}
		ranges[name] = p
	}
	for a, pa := range ranges {
		for b, pb := range ranges {
			if a < b && pa.Overlaps(pb) {
				t.Errorf("%s %s overlaps %s %s", a, pa, b, pb)
			}
		}
	}
}

func TestNthSubnet(t *testing.T) {
	for _, c := range []struct {
		r       string
		bits, n int
		want    string
	}{
		{"10.214.0.0/16", 23, 0, "10.214.0.0/23"},
		{"10.214.0.0/16", 23, 1, "10.214.2.0/23"},
		{"10.214.0.0/16", 23, 127, "10.214.254.0/23"},
		{"10.214.0.0/16", 23, 128, ""},
		{"10.216.0.0/16", 24, 5, "10.216.5.0/24"},
		{"10.216.0.0/16", 15, 0, ""},
		{"10.216.0.0/16", 24, -1, ""},
	} {
		if got := NthSubnet(c.r, c.bits, c.n); got != c.want {
			t.Errorf("NthSubnet(%s, %d, %d) = %q, want %q", c.r, c.bits, c.n, got, c.want)
		}
	}
}

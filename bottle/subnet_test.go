package bottle

import (
	"net/netip"
	"strings"
	"testing"
)

func TestFreeSubnet(t *testing.T) {
	t.Parallel()
	pp := netip.MustParsePrefix
	cases := []struct {
		name string
		pool string
		used []string
		want string // "" = none
	}{
		{"empty", "10.213.0.0/16", nil, "10.213.0.0/24"},
		{"skips used", "10.213.0.0/16", []string{"10.213.0.0/24", "10.213.1.0/24"}, "10.213.2.0/24"},
		{"skips a wide overlap", "10.213.0.0/16", []string{"10.213.0.0/23"}, "10.213.2.0/24"},
		{"skips a narrow overlap", "10.213.0.0/16", []string{"10.213.0.16/28"}, "10.213.1.0/24"},
		{"pool inside a used range", "10.213.0.0/16", []string{"10.0.0.0/8"}, ""},
		{"full /24 pool", "10.213.5.0/24", []string{"10.213.5.128/25"}, ""},
		{"pool narrower than /24", "10.213.5.0/25", nil, ""},
		{"/28 in a gap", "10.213.0.0/16/28", []string{"10.213.0.0/24", "10.213.1.0/28"}, "10.213.1.16/28"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var used []netip.Prefix
			for _, u := range tc.used {
				used = append(used, pp(u))
			}
			pool, bits := tc.pool, 24
			if strings.HasSuffix(pool, "/28") && strings.Count(pool, "/") == 2 {
				pool, bits = strings.TrimSuffix(pool, "/28"), 28
			}
			got, ok := FreeSubnet(pp(pool), bits, used, 0)
			if tc.want == "" {
				if ok {
					t.Fatalf("freeSubnet = %v, want none", got)
				}
				return
			}
			if !ok || got != pp(tc.want) {
				t.Fatalf("freeSubnet = %v %v, want %v", got, ok, tc.want)
			}
		})
	}
}

func TestFreeSubnetFromWrapsAround(t *testing.T) {
	t.Parallel()
	pool := netip.MustParsePrefix("10.213.0.0/22") // four /24s
	used := []netip.Prefix{netip.MustParsePrefix("10.213.3.0/24")}
	for start, want := range map[uint32]string{0: "10.213.0.0/24", 2: "10.213.2.0/24", 3: "10.213.0.0/24", 7: "10.213.0.0/24", 5: "10.213.1.0/24"} {
		if got, ok := FreeSubnet(pool, 24, used, start); !ok || got.String() != want {
			t.Errorf("start %d: %v %v, want %s", start, got, ok, want)
		}
	}
}

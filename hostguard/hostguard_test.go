package hostguard

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestUsableSkipsLoopbackAndLinkLocal(t *testing.T) {
	in := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("192.0.2.2").To4(), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.ParseIP("172.17.0.1"), Mask: net.CIDRMask(16, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
		&net.IPNet{IP: net.ParseIP("2001:db8::5"), Mask: net.CIDRMask(64, 128)},
		&net.IPNet{IP: net.ParseIP("::1"), Mask: net.CIDRMask(128, 128)},
		&net.IPNet{IP: net.ParseIP("172.17.0.1"), Mask: net.CIDRMask(16, 32)},
		&net.IPAddr{IP: net.ParseIP("10.0.0.1")},
	}
	got := usable(in)
	want := []netip.Addr{netip.MustParseAddr("172.17.0.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::5")}
	if !slices.Equal(got, want) {
		t.Fatalf("usable = %v, want %v", got, want)
	}
}

func TestMainArguments(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"install without a pool", []string{"-install"}, 2, "needs at least one -pool"},
		{"a pool that is no CIDR", []string{"-install", "-pool", "10.213.0.0"}, 2, "is not an IPv4 CIDR"},
		{"an IPv6 pool", []string{"-install", "-pool", "fd00::/8"}, 2, "is not an IPv4 CIDR"},
		{"stray arguments", []string{"now"}, 2, "unexpected arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Main(tt.args, &out, &errOut); code != tt.code || !strings.Contains(errOut.String(), tt.err) {
				t.Fatalf("Main(%q) = %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), tt.code, tt.err)
			}
			if out.Len() != 0 {
				t.Fatalf("Main(%q) printed %q on a usage error", tt.args, out.String())
			}
		})
	}
}

func TestMainReportsAddresses(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(nil, &out, &errOut); code != 0 {
		t.Fatalf("Main() = %d: %s", code, errOut.String())
	}
	r, err := ParseReport(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	own, err := HostAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Addrs) != len(own) || len(r.Pools) != 0 {
		t.Fatalf("report %+v, want the %d addresses of %v and no pools", r, len(own), own)
	}
}

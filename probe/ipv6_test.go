package probe

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
)

func TestIPv6(t *testing.T) {
	t.Parallel()
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	loopbacks := []net.Addr{cidr("127.0.0.1/8"), cidr("::1/128"), cidr("10.213.4.3/24")}
	noRoute := failDial(errNetUnreach)
	route := func(context.Context, string, string) (net.Conn, error) {
		c1, c2 := net.Pipe()
		c2.Close()
		return c1, nil
	}
	tests := []struct {
		name   string
		addrs  []net.Addr
		err    error
		dial   func(context.Context, string, string) (net.Conn, error)
		got    string
		detail string
	}{
		{"none", loopbacks, nil, noRoute, "none", "no route to 2001:db8::1"},
		{"no interfaces", nil, nil, noRoute, "none", ""},
		{"link-local", append(loopbacks, cidr("fe80::42:acff:fe11:2/64")), nil, noRoute, "present", "fe80::42:acff:fe11:2/64"},
		{"global", append(loopbacks, &net.IPAddr{IP: net.ParseIP("fd00:1::3")}), nil, route, "present", "fd00:1::3, and a route"},
		{"route only", loopbacks, nil, route, "present", "a route to 2001:db8::1"},
		{"no addresses known", nil, errors.New("netlink: denied"), noRoute, "error", "netlink: denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var dialed []string
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				dialed = append(dialed, network+" "+addr)
				mu.Unlock()
				return tt.dial(ctx, network, addr)
			}
			opt := Options{dial: dial, ifaceAddrs: func() ([]net.Addr, error) { return tt.addrs, tt.err }}
			r := Run(t.Context(), []Check{{Kind: KindIPv6, Expect: ExpectNone}}, opt)[0]
			if r.Got != tt.got || r.OK != (tt.got == "none") || !strings.Contains(r.Detail, tt.detail) {
				t.Fatalf("result = %+v, want got %s, detail with %q", r, tt.got, tt.detail)
			}
			if tt.err == nil && (len(dialed) != 1 || dialed[0] != "udp [2001:db8::1]:9") {
				t.Fatalf("dialed %q, want one udp [2001:db8::1]:9", dialed)
			}
		})
	}
}

package probe

import (
	"context"
	"net"
	"strings"
)

// ipv6Probe is where the IPv6 check tries to route: an address of the
// documentation prefix 2001:db8::/32. A UDP connect only looks up a route;
// it sends no packet.
const ipv6Probe = "[2001:db8::1]:9"

// checkIPv6 reports none when no interface has an IPv6 address but ::1
// and there is no route to ipv6Probe.
func checkIPv6(ctx context.Context, opt Options) (got, detail string) {
	addrs, err := opt.ifaceAddrs()
	if err != nil {
		return gotError, "list the interfaces' addresses: " + err.Error()
	}
	var v6 []string
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if ip == nil || ip.To4() != nil || ip.IsLoopback() {
			continue
		}
		v6 = append(v6, a.String())
	}
	conn, err := dialTimeout(ctx, opt, "udp", ipv6Probe, opt.ConnectTimeout)
	if err == nil {
		conn.Close()
	}
	switch {
	case len(v6) == 0 && err != nil:
		return string(ExpectNone), "no IPv6 address but ::1, and no route to 2001:db8::1 (" + err.Error() + ")"
	case len(v6) == 0:
		return gotPresent, "no IPv6 address but ::1, but a route to 2001:db8::1"
	case err != nil:
		return gotPresent, "IPv6 addresses " + strings.Join(v6, ", ") + " (no route to 2001:db8::1)"
	}
	return gotPresent, "IPv6 addresses " + strings.Join(v6, ", ") + ", and a route to 2001:db8::1"
}

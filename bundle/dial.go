package bundle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// dialTimeout bounds resolving a name and connecting to one of its
// addresses.
const dialTimeout = 10 * time.Second

// blockedKind says why the proxy never connects to ip, whatever the rules
// and allowCIDRs say, or returns "" when it may. own holds the bundle's
// addresses.
func blockedKind(ip netip.Addr, own map[netip.Addr]bool) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsUnspecified():
		return "an unspecified address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsMulticast():
		return "a multicast address"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "a broadcast address"
	case own[ip.WithZone("")]:
		return "an address of the bundle itself"
	}
	return ""
}

// ownAddrs are the addresses of the bundle's interfaces, read once at start.
func ownAddrs() (map[netip.Addr]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list the bundle's own addresses: %w", err)
	}
	own := map[netip.Addr]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				own[ip.Unmap()] = true
			}
		}
	}
	return own, nil
}

// Why the proxy never connects to the host's addresses.
const (
	hostAddrKind = "the host's address on the bottle's networks"
	gatewayKind  = "a gateway of the bundle's routes (the host, or a router past it)"
	// hostIfaceKind is an address of any of the host's interfaces: a
	// bridge's gateway, its LAN or public address.
	hostIfaceKind = "an address of the engine's host"
)

// hostKind says why the proxy never connects to ip if it is one of the
// host's addresses, a gateway or inside a denied range (BOTTLE_DENY_CIDRS,
// but for the bundle's own egress subnet), else "".
func (p *policy) hostKind(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if k := p.hosts[ip]; k != "" {
		return k
	}
	if holes.host {
		return ""
	}
	for _, d := range p.denied {
		if d.IsSingleIP() && d.Addr() == ip {
			return hostIfaceKind
		}
	}
	if p.egressSubnet.IsValid() && p.egressSubnet.Contains(ip) {
		return ""
	}
	for _, d := range p.denied {
		if d.Contains(ip) {
			return fmt.Sprintf("inside %s, the bottles' subnets", d)
		}
	}
	return ""
}

// inCIDRs reports whether a range of spec.network.allowCIDRs holds ip.
func (p *policy) inCIDRs(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, c := range p.cidrs {
		if c.Contains(ip) {
			return true
		}
	}
	return false
}

var (
	sharedRange       = netip.MustParsePrefix("100.64.0.0/10")
	benchmarkingRange = netip.MustParsePrefix("198.18.0.0/15")
)

// privateKind says what ip is when it is a private (10/8, 172.16/12,
// 192.168/16, fc00::/7), shared (100.64/10) or benchmarking (198.18/15)
// address, else "". Such addresses are the LAN's, the host's (docker0's
// 172.17.0.1) or another bottle's: a name may lead there only when
// spec.network.allowCIDRs holds the address.
func privateKind(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsPrivate():
		return "a private address"
	case sharedRange.Contains(ip):
		return "a shared (carrier-grade NAT) address"
	case benchmarkingRange.Contains(ip):
		return "a benchmarking address"
	}
	return ""
}

// checkDial says why the proxy must not connect to ap, which the
// request's host names (named) or is, or returns "" when it may. never is
// false when spec.network.allowCIDRs could allow the address. self is the
// proxy's own address.
func (p *policy) checkDial(ap netip.AddrPort, named bool, self netip.AddrPort) (kind string, never bool) {
	ip := ap.Addr().Unmap()
	if ip == self.Addr() && ap.Port() == self.Port() {
		return "the egress proxy itself", true
	}
	if k := p.hostKind(ip); k != "" {
		return k, true
	}
	// DNS rebinding: an allowed name must not lead into the LAN, the host
	// or another bottle unless allowCIDRs says so. IP literals passed the
	// allowCIDRs already.
	if named && !p.inCIDRs(ip) {
		if k := privateKind(ip); k != "" {
			return k + " outside " + allowCIDRsField, false
		}
	}
	return p.checkAddr(ap), true
}

// blockedError is a dial the address policy refused.
type blockedError struct {
	host string // what the client asked for
	addr netip.Addr
	kind string // "a loopback address", ...
	// never is true when no spec allows the address; else allowCIDRs
	// could.
	never bool
}

func (e *blockedError) Error() string {
	if e.host == e.addr.String() {
		return fmt.Sprintf("%s is %s", e.host, e.kind)
	}
	return fmt.Sprintf("%s resolves to %s, %s", e.host, e.addr, e.kind)
}

// dialer connects to allowed targets. Every connection it makes passes the
// address policy in the socket's Control hook, right before connect(2): a
// name that resolves (or rebinds) to a forbidden address is refused
// whichever address the connection would use.
type dialer struct {
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// check says why the proxy must not connect to an address, or "";
	// named is true when a name resolved to it (see policy.checkDial).
	check func(ap netip.AddrPort, named bool) (kind string, never bool)
}

// dial resolves host (now, never from a cache) and connects to its
// addresses in turn on port. A refusal by the policy is a *blockedError.
func (d *dialer) dial(ctx context.Context, host string, port int) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var addrs []netip.Addr
	ip, err := netip.ParseAddr(host)
	named := err != nil
	if !named {
		addrs = []netip.Addr{ip}
	} else {
		addrs, err = d.lookup(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	nd := net.Dialer{ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("internal: dial address %q: %w", address, err)
		}
		if kind, never := d.check(ap, named); kind != "" {
			return &blockedError{host: host, addr: ap.Addr().Unmap(), kind: kind, never: never}
		}
		return nil
	}}
	var errs []error
	var blocked *blockedError
	for i, a := range addrs {
		// Share the time left between the addresses left, as net.Dialer
		// does, so one black hole does not use up the whole timeout.
		actx, acancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl) / time.Duration(len(addrs)-i); left > 2*time.Second {
				actx, acancel = context.WithTimeout(ctx, left)
			}
		}
		c, err := nd.DialContext(actx, "tcp", netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
		acancel()
		if err == nil {
			return c, nil
		}
		if b, ok := errors.AsType[*blockedError](err); ok {
			if blocked == nil {
				blocked = b
			}
		} else {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 && blocked != nil {
		return nil, blocked
	}
	if blocked != nil {
		errs = append(errs, blocked)
	}
	return nil, errors.Join(errs...)
}

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

// guardProbePort is where CheckHostGuard knocks on the host: the discard
// port, closed on most hosts, so that without the rule the host answers
// with a reset at once.
const guardProbePort = 9

// CheckHostGuard tells whether the host guard's rule stands between the
// bundle and the host: it connects, past the proxy's policy, to port 9 of
// each IPv4 gateway of the bundle's routes (the host's address on the
// bottle's egress network). The rule drops the attempt, so no answer
// comes within timeout; without it the host answers (a reset, or the
// connection). It returns the gateways that answered.
func CheckHostGuard(ctx context.Context, procNet string, timeout time.Duration) ([]netip.Addr, error) {
	gws, err := routeGateways(orDefault(procNet, defaultProcNet))
	if err != nil {
		return nil, err
	}
	var answered []netip.Addr
	d := net.Dialer{Timeout: timeout}
	for _, gw := range gws {
		if !gw.Is4() {
			continue
		}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(gw, guardProbePort).String())
		switch {
		case err == nil:
			_ = c.Close()
			answered = append(answered, gw)
		case errors.Is(err, syscall.ECONNREFUSED):
			answered = append(answered, gw)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
	}
	if len(gws) == 0 {
		return nil, fmt.Errorf("the bundle has no route with a gateway: nothing to knock on")
	}
	return answered, nil
}

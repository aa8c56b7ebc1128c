package probe

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// checkTCP connects to c.Addr and hangs up.
func checkTCP(ctx context.Context, c Check, opt Options) (got, detail string) {
	timeout := opt.bound(c, opt.ConnectTimeout)
	conn, err := dialTimeout(ctx, opt, "tcp", c.Addr, timeout)
	if err != nil {
		return classifyDial(err, timeout)
	}
	conn.Close()
	return string(ExpectOpen), "connected"
}

// dialTimeout dials with its own deadline.
func dialTimeout(ctx context.Context, opt Options, network, addr string, d time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return opt.dial(ctx, network, addr)
}

// classifyDial sorts a failed connect: refused when the peer's kernel
// answered with a reset, unreachable when nothing answered or there is no
// way there, error for anything else.
func classifyDial(err error, timeout time.Duration) (got, detail string) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return gotRefused, "connection refused: " + err.Error()
	case isTimeout(err):
		return string(ExpectUnreachable), "no answer within " + timeout.String()
	case isUnreachable(err):
		return string(ExpectUnreachable), err.Error()
	}
	return gotError, err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// isUnreachable reports errors that mean there is no way to the peer: no
// route, no such address family, or a local firewall that forbids it.
func isUnreachable(err error) bool {
	for _, e := range []syscall.Errno{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN,
		syscall.ENETDOWN, syscall.EADDRNOTAVAIL, syscall.EAFNOSUPPORT, syscall.EPERM, syscall.EACCES} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

package bundle

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limiter caps how many connections a listener has open at once: Accept
// waits for a slot, a connection's first Close gives it back. The proxy
// keeps its own listener (trackingListener) rather than
// golang.org/x/net/netutil.LimitListener, whose connections hide
// *net.TCPConn and with it the half-close goproxy's tunnels use.
type limiter struct {
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimiter(n int) *limiter {
	return &limiter{slots: make(chan struct{}, n), done: make(chan struct{})}
}

// acquire waits for a slot; false once the listener is closed.
func (l *limiter) acquire() bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.slots <- struct{}{}:
		return true
	case <-l.done:
		return false
	}
}

func (l *limiter) release() { <-l.slots }

func (l *limiter) close() { l.closeOnce.Do(func() { close(l.done) }) }

// limitListener is a net.Listener with at most cap(lim.slots) connections
// open.
type limitListener struct {
	net.Listener
	lim *limiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	if !l.lim.acquire() {
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.lim.release()
		return nil, err
	}
	return &limitedConn{Conn: c, release: l.lim.release}, nil
}

func (l *limitListener) Close() error {
	l.lim.close()
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// idleConn is an upstream connection of the proxy that closes itself, and
// the client's connection (peer), once no byte has crossed it either way
// for idle. Every byte of a tunnel crosses the upstream connection, so its
// reads and writes are the tunnel's activity. It embeds net.Conn, not
// *net.TCPConn, so that io.Copy uses its Read and Write rather than
// splicing past them, and keeps the half-close goproxy's tunnels use.
type idleConn struct {
	net.Conn
	peer   net.Conn // may be nil
	idle   time.Duration
	onIdle func() // called once when idleness closes it; may be nil
	start  time.Time
	last   atomic.Int64 // time.Since(start) at the last byte
	closed atomic.Bool
	timer  *time.Timer
}

func newIdleConn(c, peer net.Conn, idle time.Duration, onIdle func()) *idleConn {
	ic := &idleConn{Conn: c, peer: peer, idle: idle, onIdle: onIdle, start: time.Now()}
	ic.timer = time.AfterFunc(time.Duration(1<<63-1), ic.check)
	ic.timer.Reset(idle)
	return ic
}

func (c *idleConn) touch() { c.last.Store(int64(time.Since(c.start))) }

// check runs when the timer fires: it closes both ends if the connection
// has been idle long enough, else waits for the rest.
func (c *idleConn) check() {
	if c.closed.Load() {
		return
	}
	if left := c.idle - (time.Since(c.start) - time.Duration(c.last.Load())); left > 0 {
		c.timer.Reset(left)
		return
	}
	if c.closed.CompareAndSwap(false, true) {
		_ = c.Conn.Close()
		if c.peer != nil {
			_ = c.peer.Close()
		}
		if c.onIdle != nil {
			c.onIdle()
		}
	}
}

func (c *idleConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleConn) Close() error {
	c.closed.Store(true)
	c.timer.Stop()
	return c.Conn.Close()
}

func (c *idleConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}

func (c *idleConn) CloseRead() error {
	if hc, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return hc.CloseRead()
	}
	return nil
}

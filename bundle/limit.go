package bundle

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener is a TCP listener with at most n connections open at
// once: Accept waits for a slot, and a connection holds it until its first
// Close, through a tunnel's life too. With a set, each connection is in it
// until closed. Its connections are *trackedConn, which keep
// *net.TCPConn's methods: golang.org/x/net/netutil.LimitListener's hide
// them, and with them the half-close goproxy's tunnels use.
type limitListener struct {
	net.Listener
	set       *connSet // nil: the connections are not tracked
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int, set *connSet) *limitListener {
	return &limitListener{Listener: ln, set: set, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		if !l.acquire() {
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok { // a TCP listener's connections are *net.TCPConn
			l.release()
			_ = c.Close()
			continue
		}
		w := &trackedConn{TCPConn: tc, set: l.set, release: l.release}
		if l.set == nil || l.set.add(w) {
			return w, nil
		}
		_ = w.Close() // shutting down
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// acquire waits for a slot; false once the listener is closed.
func (l *limitListener) acquire() bool {
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

func (l *limitListener) release() { <-l.slots }

// trackedConn is a connection of a limitListener: it keeps *net.TCPConn's
// methods (CloseWrite and CloseRead included), leaves the set and gives
// its slot back when closed.
type trackedConn struct {
	*net.TCPConn
	set     *connSet     // may be nil
	state   atomic.Int32 // http.ConnState, for the proxy; 0 is StateNew
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		if c.set != nil {
			c.set.remove(c)
		}
		c.release()
	})
	return c.TCPConn.Close()
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

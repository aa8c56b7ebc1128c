package bundle

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A tunnel that carries no byte either way for tunnelIdle is closed at
// both ends; one that carries bytes, in one direction only, is not.
func TestEgressTunnelIdle(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	// A gap of 100ms against an idle bound of 1s: loaded CI machines
	// (-race, other packages' tests) stall a goroutine for far less.
	stream := startStreamer(t, 12, 100*time.Millisecond)
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1"})
	cfg := baseConfig(res, "allowed.test:*")
	cfg.tunnelIdle = time.Second
	b := startBundle(t, cfg)

	// Idle: closed after about tunnelIdle.
	c := dialProxy(t, b.proxy)
	if resp, _ := c.do(t, "CONNECT", "allowed.test:"+strconv.Itoa(echo.port), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	c.echo(t, "before the pause")
	start := time.Now()
	if n, err := c.r.ReadByte(); err == nil {
		t.Fatalf("read %q from an idle tunnel", n)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 10*time.Second {
		t.Fatalf("the idle tunnel closed after %v, want about 1s", d)
	}
	echo.waitEnded(t)
	b.log.find(t, "egress connection idle, closed")

	// Bytes one way keep it open: 12 bytes 100ms apart (1.2s, longer than
	// tunnelIdle), while the client sends nothing; then idle again.
	c = dialProxy(t, b.proxy)
	if resp, _ := c.do(t, "CONNECT", "allowed.test:"+strconv.Itoa(stream.port), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	got, err := io.ReadAll(c.r)
	if len(got) != 12 {
		t.Fatalf("read %d bytes from the stream (%v), want 12: the tunnel closed while busy", len(got), err)
	}
}

// streamer is a loopback server that writes n bytes, every interval, then
// waits for the peer to close.
type streamer struct{ port int }

func startStreamer(t *testing.T, n int, every time.Duration) *streamer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for range n {
					time.Sleep(every)
					if _, err := c.Write([]byte{'x'}); err != nil {
						return
					}
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return &streamer{port: ln.Addr().(*net.TCPAddr).Port}
}

// The proxy holds at most maxConns client connections; a closed one, and
// a finished tunnel, gives its slot back.
func TestEgressConnLimit(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1"})
	cfg := baseConfig(res, "allowed.test:*")
	cfg.maxConns = 2
	b := startBundle(t, cfg)
	target := "allowed.test:" + strconv.Itoa(echo.port)

	// Slots come back: more requests, one after the other, than slots.
	for i := range 3 {
		c := dialProxy(t, b.proxy)
		if resp, _ := c.do(t, "CONNECT", target, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT %d = %s", i, resp.Status)
		}
		c.echo(t, "tunnel")
		_ = c.Close()
		echo.waitEnded(t)
		if resp, _ := dialProxy(t, b.proxy).do(t, "CONNECT", "denied.test:443", ""); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("CONNECT denied.test = %s", resp.Status)
		}
		c = dialProxy(t, b.proxy)
		if resp, _ := c.do(t, "GET", "http://denied.test/", ""); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("GET denied.test = %s", resp.Status)
		}
		_ = c.Close()
	}

	// Two tunnels hold both slots: a third connection waits.
	t1, t2 := dialProxy(t, b.proxy), dialProxy(t, b.proxy)
	for _, c := range []*proxyConn{t1, t2} {
		if resp, _ := c.do(t, "CONNECT", target, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT = %s", resp.Status)
		}
	}
	third := dialProxy(t, b.proxy) // the kernel's backlog accepts it
	answered := make(chan int, 1)
	go func() {
		_ = third.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(third, "CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n"); err != nil {
			answered <- -1
			return
		}
		resp, err := http.ReadResponse(third.r, &http.Request{Method: "CONNECT"})
		if err != nil {
			answered <- -1
			return
		}
		answered <- resp.StatusCode
	}()
	select {
	case s := <-answered:
		t.Fatalf("a third connection was answered (%d) while two tunnels held the slots", s)
	case <-time.After(300 * time.Millisecond):
	}
	t1.echo(t, "still open")
	_ = t1.Close()
	select {
	case s := <-answered:
		if s != http.StatusForbidden {
			t.Fatalf("the third connection got %d, want 403", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the third connection was not served after a tunnel closed")
	}
	t2.echo(t, "unaffected")
}

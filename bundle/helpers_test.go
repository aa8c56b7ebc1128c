package bundle

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests send traffic only to loopback listeners they start themselves. The
// unexported seams of Config map test names (allowed.test, ...) to those
// listeners and let the proxy connect to exactly 127.0.0.1 and ::1 (the
// production policy refuses loopback).

// loopbackOnly is the test address policy: 127.0.0.1 and ::1 only.
func loopbackOnly(ap netip.AddrPort) string {
	if a := ap.Addr().Unmap(); a == netip.MustParseAddr("127.0.0.1") || a == netip.IPv6Loopback() {
		return ""
	}
	return "not 127.0.0.1 or ::1 (test policy)"
}

// resolver is the test name resolver; it records the names asked for.
type resolver struct {
	mu    sync.Mutex
	hosts map[string][]netip.Addr
	asked []string
}

func newResolver(hosts map[string]string) *resolver {
	r := &resolver{hosts: map[string][]netip.Addr{}}
	for h, addrs := range hosts {
		for _, a := range strings.Split(addrs, ",") {
			r.hosts[h] = append(r.hosts[h], netip.MustParseAddr(a))
		}
	}
	return r
}

func (r *resolver) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, host)
	if a, ok := r.hosts[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host (test resolver)", host)
}

func (r *resolver) wasAsked(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.asked {
		if h == host {
			return true
		}
	}
	return false
}

// logBuffer is the io.Writer given to Run: it keeps the lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) lines() []string {
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// decisions are the decision lines so far.
func (b *logBuffer) decisions() []Decision {
	var out []Decision
	for _, l := range b.lines() {
		if d, ok := ParseDecision([]byte(l)); ok {
			out = append(out, d)
		}
	}
	return out
}

// find waits until a line with message msg is logged and returns it.
func (b *logBuffer) find(t testing.TB, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range b.lines() {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m[FieldMessage] == msg {
				return m
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q line in the log:\n%s", msg, b.String())
	return nil
}

// testBundle is Run in a goroutine, on loopback, with ephemeral ports.
type testBundle struct {
	log    *logBuffer
	res    *resolver
	proxy  string // host:port
	dns    string
	status string
	cancel context.CancelFunc
	done   chan error
}

// baseConfig runs the egress proxy with the test seams.
func baseConfig(res *resolver, allow ...string) Config {
	return Config{
		Bottle: "hello", Daemons: []string{"egress"}, EgressAllow: allow,
		ListenIP: "127.0.0.1", ProxyPort: "0", DNSPort: "0", StatusAddr: "127.0.0.1:0",
		lookup: res.lookup, checkAddr: loopbackOnly, procNet: noProcNet,
	}
}

// startEgressAndDNS runs both daemons: the proxy allows allowed.test on
// any port, and the DNS daemon forwards to a fake upstream. echo is an
// echo server that allowed.test reaches.
func startEgressAndDNS(t *testing.T) (b *testBundle, echo *listener) {
	t.Helper()
	up := startUpstream(t)
	echo = startListener(t, "tcp", "127.0.0.1:0", true)
	cfg := baseConfig(newResolver(map[string]string{"allowed.test": "127.0.0.1"}), "allowed.test:*")
	cfg.Daemons, cfg.DNSUpstream = []string{"egress", "dns"}, up.addr
	return startBundle(t, cfg), echo
}

// noProcNet holds no routing table: the tests' policies do not depend on
// the routes of the machine they run on.
const noProcNet = "testdata/no-proc-net"

func startBundle(t testing.TB, cfg Config) *testBundle {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	b := &testBundle{log: &logBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- Run(ctx, cfg, b.log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after its context was cancelled")
		}
	})
	ready := b.log.find(t, "ready")
	ds, _ := ready["daemons"].([]any)
	for _, d := range ds {
		m, _ := d.(map[string]any)
		switch m["name"] {
		case "egress":
			b.proxy, _ = m["listen"].(string)
		case "dns":
			b.dns, _ = m["listen"].(string)
		}
	}
	b.status, _ = ready["status"].(string)
	return b
}

// stop cancels Run and waits for it.
func (b *testBundle) stop(t *testing.T) error {
	t.Helper()
	b.cancel()
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("Run did not return within 5s of its context being cancelled")
		return nil
	}
}

// listener is a loopback TCP server that counts its accepts; echo makes it
// echo, otherwise it closes each connection at once.
type listener struct {
	net.Listener
	accepts atomic.Int32
	port    int
	// ended receives how each echoed connection ended (io.EOF or an
	// error).
	ended chan error
}

func startListener(t *testing.T, network, addr string, echo bool) *listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	l := &listener{Listener: ln, port: ln.Addr().(*net.TCPAddr).Port, ended: make(chan error, 16)}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepts.Add(1)
			if !echo {
				_ = c.Close()
				continue
			}
			go func() {
				defer c.Close()
				_, err := io.Copy(c, c)
				if err == nil {
					err = io.EOF
				}
				l.ended <- err
			}()
		}
	}()
	return l
}

// proxyConn is a raw client connection to the proxy.
type proxyConn struct {
	net.Conn
	r *bufio.Reader
}

func dialProxy(t *testing.T, proxy string) *proxyConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &proxyConn{Conn: c, r: bufio.NewReader(c)}
}

// do writes a raw request and reads the response with its body.
func (c *proxyConn) do(t *testing.T, method, target, extra string) (*http.Response, string) {
	t.Helper()
	host := target
	switch {
	case strings.HasPrefix(target, "/"):
		host = "proxy.invalid"
	case method != http.MethodConnect:
		host = strings.SplitN(strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "https://"), "/", 2)[0]
	}
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", method, target, host, extra); err != nil {
		t.Fatalf("write request: %v", err)
	}
	req := &http.Request{Method: method}
	resp, err := http.ReadResponse(c.r, req)
	if err != nil {
		t.Fatalf("%s %s: read response: %v", method, target, err)
	}
	if method == http.MethodConnect && resp.StatusCode == http.StatusOK {
		return resp, ""
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp, string(body)
}

// echo sends a line through an established tunnel and reads it back.
func (c *proxyConn) echo(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write through tunnel: %v", err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("read through tunnel = %q, %v; want %q", got, err, line+"\n")
	}
}

// waitEnded waits for an echo connection to end.
func (l *listener) waitEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-l.ended:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("the upstream connection did not end")
		return errors.New("timeout")
	}
}

// httpGet fetches url directly (no proxy) and returns the body.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// startBlocking runs the proxy with each of hosts (name: addresses, as
// newResolver takes them) allowed on any port and loopback inside
// allowCIDRs, then change applied: what refuses a request is the policy of
// addresses the proxy never connects to. never is a loopback listener a
// dial of the tests' port would reach.
func startBlocking(t *testing.T, hosts map[string]string, change func(*Config)) (b *testBundle, res *resolver, never *listener) {
	t.Helper()
	never = startListener(t, "tcp", "127.0.0.1:0", false)
	res = newResolver(hosts)
	var allow []string
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		allow = append(allow, h+":*")
	}
	cfg := baseConfig(res, allow...)
	cfg.AllowCIDRs = []string{"127.0.0.0/8"}
	change(&cfg)
	return startBundle(t, cfg), res, never
}

// blockedCase is a request the proxy must refuse with 403 and a body
// holding body, without dialling anything.
type blockedCase struct{ method, target, body string }

// expectBlocked sends each request to b's proxy, checks that it is refused
// and that never was not dialled, and returns the decision lines, one a
// request.
func expectBlocked(t *testing.T, b *testBundle, never *listener, tests []blockedCase) []Decision {
	t.Helper()
	for _, tt := range tests {
		resp, body := dialProxy(t, b.proxy).do(t, tt.method, tt.target, "")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) != deniedBlocked || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s = %s (%s) %q; want 403 %s containing %q", tt.method, tt.target, resp.Status, resp.Header.Get(DeniedHeader), body, deniedBlocked, tt.body)
		}
	}
	if n := never.accepts.Load(); n != 0 {
		t.Fatalf("a blocked target was dialled %d times", n)
	}
	ds := b.log.decisions()
	if len(ds) != len(tests) {
		t.Fatalf("%d decision lines, want %d (one per request):\n%s", len(ds), len(tests), b.log)
	}
	return ds
}

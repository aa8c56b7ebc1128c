package bundle

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// connEnd is what a raw client does after sending its bytes.
type connEnd int

const (
	readAnswer connEnd = iota // wait for the answer
	halfClose                 // close its writing side, then read
)

// rawExchange sends raw to the proxy on a connection of its own, ends it
// as end says, and returns the status the proxy answered (0: none).
func rawExchange(t *testing.T, proxy, raw string, end connEnd) int {
	t.Helper()
	c := dialProxy(t, proxy)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	if end == halfClose {
		_ = c.Conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			var ne net.Error
			if !errors.As(err, &ne) || ne.Timeout() {
				t.Fatalf("read the answer: %v", err)
			}
		}
		return 0
	}
	_ = resp.Body.Close()
	_ = c.Close()
	return resp.StatusCode
}

// waitDecisions waits until log holds n decision lines and returns them.
func waitDecisions(t *testing.T, log *logBuffer, n int) []Decision {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ds := log.decisions()
		if len(ds) >= n || time.Now().After(deadline) {
			if len(ds) != n {
				t.Fatalf("%d decision lines, want %d:\n%s", len(ds), n, log)
			}
			return ds
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Every request net/http's server refuses before the handler, or that is
// cut short, is one deny decision line naming what was wrong, the status
// answered and the client, and quoting nothing of the request but its
// host. Before refusal.go none of these left a line.
func TestEgressRefusalsBeforeTheHandler(t *testing.T) {
	t.Parallel()
	b := startBundle(t, baseConfig(newResolver(nil), "allowed.test:*"))
	const secret = "X-Secret: hunter2\r\n"
	tests := []struct {
		name   string
		raw    string
		end    connEnd
		status int
		reason string
		method string
		host   string
		port   int
	}{
		{name: "malformed Host", raw: "GET / HTTP/1.1\r\nHost: bad host\r\n" + secret + "\r\n",
			status: 400, reason: "the request's Host header is not a valid host", method: "GET", host: "bad host"},
		{name: "duplicate Host", raw: "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: other.test\r\n" + secret + "\r\n",
			status: 400, reason: "the request has more than one Host header", method: "GET", host: "allowed.test", port: 80},
		{name: "missing Host", raw: "GET http://allowed.test:8080/ HTTP/1.1\r\n" + secret + "\r\n",
			status: 400, reason: "the request has no Host header, which HTTP/1.1 requires", method: "GET", host: "allowed.test", port: 8080},
		{name: "header too large", raw: "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: " + strings.Repeat("s", 80<<10) + "\r\n\r\n",
			status: 431, reason: "the request's line and header are larger than 64 KiB", method: "GET", host: "allowed.test", port: 80},
		{name: "bad request line", raw: "NOT-A-REQUEST-LINE\r\n" + secret + "\r\n",
			status: 400, reason: "the request line is not METHOD TARGET HTTP/VERSION"},
		{name: "bad method", raw: "G(T http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
			status: 400, reason: "the request's method is not a valid HTTP method name"},
		{name: "malformed version", raw: "GET http://allowed.test/ HTTP/1.x\r\nHost: allowed.test\r\n\r\n",
			status: 400, reason: "the request's HTTP version is malformed", method: "GET", host: "allowed.test", port: 80},
		{name: "bad target", raw: "GET %zz HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
			status: 400, reason: "the request's target is not a URL", method: "GET", host: "allowed.test"},
		{name: "malformed header line", raw: "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nNo colon here\r\n\r\n",
			status: 400, reason: "a header line of the request is malformed", method: "GET", host: "allowed.test", port: 80},
		{name: "control byte in a header", raw: "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\x01b\r\n\r\n",
			status: 400, reason: "a header line of the request is malformed", method: "GET", host: "allowed.test", port: 80},
		{name: "bad Content-Length", raw: "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: many\r\n\r\n",
			status: 400, reason: "Content-Length", method: "POST", host: "allowed.test", port: 80},
		{name: "unsupported Transfer-Encoding", raw: "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip\r\n" + secret + "\r\n",
			status: 501, reason: "Transfer-Encoding is not chunked", method: "POST", host: "allowed.test", port: 80},
		{name: "HTTP/2.0 request line", raw: "GET http://allowed.test/ HTTP/2.0\r\nHost: allowed.test\r\n\r\n",
			status: 505, reason: "the request's HTTP version is not 1.0 or 1.1", method: "GET", host: "allowed.test", port: 80},
		{name: "HTTP/0.9 CONNECT", raw: "CONNECT allowed.test:443 HTTP/0.9\r\n\r\n",
			status: 505, reason: "not 1.0 or 1.1", method: "CONNECT", host: "allowed.test", port: 443},
		{name: "bad Expect", raw: "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nExpect: bogus\r\nContent-Length: 1\r\n\r\nx",
			status: 417, reason: "the request's Expect header is not 100-continue", method: "POST", host: "allowed.test", port: 80},
		{name: "garbage then close", raw: "\x00\x01\x02hunter2", end: halfClose,
			status: 400, reason: "the request line is not METHOD TARGET HTTP/VERSION"},
		{name: "part of a request then close", raw: "CONNECT allowed.test:443 HTTP/1.1\r\n" + secret, end: halfClose,
			status: 400, reason: "the client sent part of a request, then closed the connection", method: "CONNECT", host: "allowed.test", port: 443},
	}
	for i, tt := range tests {
		if got := rawExchange(t, b.proxy, tt.raw, tt.end); got != tt.status {
			t.Errorf("%s: answered %d, want %d", tt.name, got, tt.status)
		}
		d := waitDecisions(t, b.log, i+1)[i]
		if d.Allowed() || d.Daemon != "egress" || d.Status != tt.status || !strings.Contains(d.Reason, tt.reason) ||
			d.Method != tt.method || d.Host != tt.host || d.Port != tt.port || !strings.HasPrefix(d.Client, "127.0.0.1:") || d.More != 0 {
			t.Errorf("%s: decision %+v; want deny %d %q %s %s:%d from 127.0.0.1", tt.name, d, tt.status, tt.reason, tt.method, tt.host, tt.port)
		}
	}
	for _, l := range b.log.lines() {
		if len(l) >= 2<<10 {
			t.Errorf("log line of %d bytes: %.200s...", len(l), l)
		}
	}
	checkNoSecrets(t, b.log)
	st, err := QueryStatus(t.Context(), b.status)
	if err != nil {
		t.Fatal(err)
	}
	if st.Decisions.Deny != int64(len(tests)) {
		t.Errorf("status counts %d denials, want %d", st.Decisions.Deny, len(tests))
	}
}

// A request still coming when the bundle stops gets no answer; it is
// logged, without a status, before the bundle says it stopped.
func TestEgressRefusalCutByShutdown(t *testing.T) {
	t.Parallel()
	b := startBundle(t, baseConfig(newResolver(nil), "allowed.test:*"))
	c := dialProxy(t, b.proxy)
	if _, err := io.WriteString(c, "GET http://allowed.test:81/ HTTP/1.1\r\nHost: allowed.test\r\nX-Secret: hunter2\r\n"); err != nil {
		t.Fatal(err)
	}
	idle := dialProxy(t, b.proxy)     // sends nothing: no line
	time.Sleep(50 * time.Millisecond) // the proxy reads the bytes
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	_ = idle.Close()
	ds := b.log.decisions()
	if len(ds) != 1 {
		t.Fatalf("%d decision lines, want 1:\n%s", len(ds), b.log)
	}
	if d := ds[0]; d.Status != 0 || d.Host != "allowed.test" || d.Port != 81 || d.Method != "GET" ||
		d.Reason != "the client sent part of a request; the connection closed before it was whole" {
		t.Errorf("decision %+v, want the cut request", d)
	}
	lines := b.log.lines()
	if !strings.Contains(lines[len(lines)-1], `"message":"stopped"`) {
		t.Errorf("the last line is %s, want stopped", lines[len(lines)-1])
	}
	checkNoSecrets(t, b.log)
}

// A request whose header does not arrive within readHeaderTimeout is
// dropped by the server without an answer: logged, without a status. A
// connection that sent nothing in that time is not. Skipped with -short:
// it waits the real 10 seconds.
func TestEgressRefusalHeaderTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits readHeaderTimeout (10s)")
	}
	t.Parallel()
	b := startBundle(t, baseConfig(newResolver(nil), "allowed.test:*"))
	slow, idle := dialProxy(t, b.proxy), dialProxy(t, b.proxy)
	if _, err := io.WriteString(slow, "CONNECT allowed.test:443 HTTP/1.1\r\nX-Secret: hunter2\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*proxyConn{slow, idle} {
		_ = c.SetReadDeadline(time.Now().Add(readHeaderTimeout + 5*time.Second))
		if n, err := c.r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("read = %d, %v; want the proxy to close the connection", n, err)
		}
	}
	d := waitDecisions(t, b.log, 1)[0]
	if d.Status != 0 || d.Host != "allowed.test" || d.Port != 443 || d.Method != "CONNECT" ||
		d.Reason != "the client sent part of a request and no whole request header within 10s" {
		t.Errorf("decision %+v, want the timed-out request", d)
	}
	time.Sleep(50 * time.Millisecond) // a line for the idle connection would show now
	if n := len(b.log.decisions()); n != 1 {
		t.Errorf("%d decision lines, want 1:\n%s", n, b.log)
	}
	checkNoSecrets(t, b.log)
}

// A TLS client pointed at the plain proxy port, as if HTTPS_PROXY were
// https://: one refusal, whether the server answered its ClientHello 400
// (it held a newline) or the client gave up first.
func TestEgressRefusalTLSToPlainPort(t *testing.T) {
	t.Parallel()
	b := startBundle(t, baseConfig(newResolver(nil), "allowed.test:*"))
	c := dialProxy(t, b.proxy)
	_ = c.SetDeadline(time.Now().Add(time.Second))
	tc := tls.Client(c.Conn, &tls.Config{ServerName: "allowed.test"})
	if err := tc.Handshake(); err == nil {
		t.Fatal("a TLS handshake with the plain proxy port succeeded")
	}
	_ = c.Close()
	d := waitDecisions(t, b.log, 1)[0]
	if d.Allowed() || d.Status != 0 && d.Status != 400 || d.Host != "" || d.Method != "" ||
		d.Reason != "the client sent TLS to the proxy's plain HTTP port; HTTPS goes through CONNECT host:443" {
		t.Errorf("decision %+v, want a TLS refusal", d)
	}
}

// Connections that send nothing are not refusals, and answers a handler
// wrote are not logged again as the server's: on one keep-alive
// connection, a denial by the policy, then a request the server refuses,
// each one line.
func TestEgressRefusalsNotDoubled(t *testing.T) {
	t.Parallel()
	b := startBundle(t, baseConfig(newResolver(nil), "allowed.test:*"))
	for range 3 {
		c := dialProxy(t, b.proxy)
		_ = c.Close()
	}
	c := dialProxy(t, b.proxy)
	resp, _ := c.do(t, http.MethodGet, "http://denied.test/", "")
	if resp.StatusCode != http.StatusForbidden || resp.Close {
		t.Fatalf("GET denied.test = %s (close %v), want a keep-alive 403", resp.Status, resp.Close)
	}
	if _, err := io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c.r), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the second request: %v, %v; want 400", resp, err)
	}
	_ = c.Close()
	ds := waitDecisions(t, b.log, 2)
	if ds[0].Host != "denied.test" || ds[0].Status != 0 || ds[0].Client != "" ||
		ds[1].Status != 400 || ds[1].Reason != "the request has more than one Host header" {
		t.Errorf("decisions %+v, want the policy's denial, then the server's 400", ds)
	}
	time.Sleep(50 * time.Millisecond) // a late, wrong line would show now
	if n := len(b.log.decisions()); n != 2 {
		t.Errorf("%d decision lines, want 2:\n%s", n, b.log)
	}
}

// The status lines the proxy's conns recognize as the server's answers.
func TestParseStatusLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		status int
		text   string
		ok     bool
	}{
		{"HTTP/1.1 400 Bad Request: malformed Host header\r\nContent-Type: text/plain", 400, "Bad Request: malformed Host header", true},
		{"HTTP/1.1 431 Request Header Fields Too Large\r\n", 431, "Request Header Fields Too Large", true},
		{"HTTP/1.0 200 OK\r\n", 200, "OK", true},
		{"HTTP/1.1 4x0 Bad\r\n", 0, "", false},
		{"HTTP/2 400 Bad\r\n", 0, "", false},
		{"HTTP/1.1 40", 0, "", false},
		{"hello", 0, "", false},
	}
	for _, tt := range tests {
		status, text, ok := parseStatusLine([]byte(tt.in))
		if status != tt.status || text != tt.text || ok != tt.ok {
			t.Errorf("parseStatusLine(%q) = %d, %q, %v; want %d, %q, %v", tt.in, status, text, ok, tt.status, tt.text, tt.ok)
		}
	}
}

// How a request that never became whole ended.
func TestCutShortReason(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "read", Err: timeoutErr{}}
	tests := []struct {
		buf  string
		err  error
		want string
	}{
		{"GET http://a.test/ HTTP/1.1\r\nHost:", timeout, "the client sent part of a request and no whole request header within 10s"},
		{"\x00garbage", io.EOF, "the client sent bytes that are not HTTP, then closed the connection"},
		{"GE", net.ErrClosed, "the client sent part of a request; the connection closed before it was whole"},
	}
	for _, tt := range tests {
		if got := refusalReason([]byte(tt.buf), false, 0, "", tt.err); got != tt.want {
			t.Errorf("refusalReason(%q, %v) = %q, want %q", tt.buf, tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

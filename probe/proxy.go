package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bottle-apply/bottle-apply/bundle"
)

const userAgent = "bottle-apply-probe"

// viaProxy connects to the proxy at c.Addr and hands the connection to
// talk, with a deadline opt.ProxyTimeout from then that ctx's end cuts
// short.
func viaProxy(ctx context.Context, c Check, opt Options,
	talk func(c Check, opt Options, conn net.Conn, br *bufio.Reader) (got, detail string)) (got, detail string) {
	conn, err := dialTimeout(ctx, opt, "tcp", c.Addr, opt.ConnectTimeout)
	if err != nil {
		got, detail := classifyDial(err, opt.ConnectTimeout)
		if got == gotRefused {
			got = string(ExpectUnreachable)
		}
		return got, "the proxy " + c.Addr + ": " + detail
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(opt.ProxyTimeout))
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()
	return talk(c, opt, conn, bufio.NewReader(conn))
}

// proxyConnect asks the proxy for a tunnel to c.Target and, if it opens
// one, sends GET / through it.
func proxyConnect(c Check, opt Options, conn net.Conn, br *bufio.Reader) (got, detail string) {
	req := "CONNECT " + c.Target + " HTTP/1.1\r\nHost: " + c.Target + "\r\nUser-Agent: " + userAgent + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return gotError, "send CONNECT to the proxy: " + ioError(err, opt.ProxyTimeout)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return gotError, "read the proxy's answer to CONNECT: " + ioError(err, opt.ProxyTimeout)
	}
	switch {
	case isDenial(resp):
		return string(ExpectDenied), denyReason(resp)
	case resp.StatusCode/100 != 2:
		return gotError, "the proxy answered CONNECT with " + statusReason(resp)
	}
	// The tunnel is open; the body of a 2xx answer to CONNECT is the
	// tunnel itself, so it is not read.
	get := "GET / HTTP/1.1\r\nHost: " + hostHeader(c.Target) + "\r\nUser-Agent: " + userAgent +
		"\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, get); err != nil {
		return gotError, "tunnel opened (" + resp.Status + "), then send GET /: " + ioError(err, opt.ProxyTimeout)
	}
	inner, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return gotError, "tunnel opened (" + resp.Status + "), then read the answer to GET /: " + ioError(err, opt.ProxyTimeout)
	}
	inner.Body.Close()
	if inner.StatusCode/100 != 2 {
		return gotError, "tunnel opened (" + resp.Status + "), but GET / answered " + statusReason(inner)
	}
	return string(ExpectAllowed), "tunnel opened (" + resp.Status + "), GET / answered " + inner.Status
}

// accessDenied is the TLS alert record the bundle's proxy sends when it
// refuses a TLS tunnel: a fatal access_denied (bundle/sniff.go).
var accessDenied = []byte{21, 3, 3, 0, 2, 2, 49}

// proxyTLS asks the proxy for a tunnel to c.Target and, if it opens one,
// sends a TLS ClientHello for c.SNI through it. The proxy must answer with
// its own alert access_denied, and nothing before it: a server's
// handshake, another alert, or a close without an alert all say that the
// proxy dialled the target with a ClientHello it had not checked. A
// proxy that opens no tunnel at all (an error answer to the CONNECT)
// dialled nothing either.
func proxyTLS(c Check, opt Options, conn net.Conn, br *bufio.Reader) (got, detail string) {
	req := "CONNECT " + c.Target + " HTTP/1.1\r\nHost: " + c.Target + "\r\nUser-Agent: " + userAgent + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return gotError, "send CONNECT to the proxy: " + ioError(err, opt.ProxyTimeout)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return gotError, "read the proxy's answer to CONNECT: " + ioError(err, opt.ProxyTimeout)
	}
	if resp.StatusCode/100 != 2 {
		// The CONNECT alone was not let through, so the ClientHello was
		// never looked at: the check passes, and says so.
		return gotNoTunnel, "the proxy opened no tunnel (" + denyReason(resp) + "), so the ClientHello was not sent"
	}
	rec := &readRecorder{Conn: conn, r: br}
	tc := tls.Client(rec, &tls.Config{ServerName: c.SNI, MinVersion: tls.VersionTLS12})
	herr := tc.Handshake()
	seen := rec.bytes()
	switch {
	case herr == nil:
		return gotHandshake, "tunnel opened, and a server completed a TLS handshake for " + c.SNI
	case bytes.Equal(seen, accessDenied):
		return string(ExpectDenied), "tunnel opened, then the proxy refused the ClientHello with a TLS alert access_denied"
	case len(seen) > 0 && seen[0] == 22:
		return gotHandshake, fmt.Sprintf("tunnel opened, then a server answered the ClientHello for %s (%d bytes of handshake: %v)", c.SNI, len(seen), herr)
	case len(seen) > 0 && seen[0] == 21:
		return gotAlert, fmt.Sprintf("tunnel opened, then a TLS alert that is not the proxy's (%x): %v", seen[:min(len(seen), 7)], herr)
	case len(seen) > 0:
		return gotError, fmt.Sprintf("tunnel opened, then %d bytes that are not TLS: %v", len(seen), herr)
	case isTimeout(herr):
		return gotTimeout, fmt.Sprintf("tunnel opened, then no answer to the ClientHello within %s", opt.ProxyTimeout)
	}
	return gotClosed, "tunnel opened, then it closed without the proxy's alert: " + herr.Error()
}

// readRecorder is a connection whose reads come from r, recorded.
type readRecorder struct {
	net.Conn
	r   io.Reader
	mu  sync.Mutex
	buf []byte
}

func (c *readRecorder) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.mu.Lock()
	if len(c.buf) < 1<<10 {
		c.buf = append(c.buf, b[:n]...)
	}
	c.mu.Unlock()
	return n, err
}

func (c *readRecorder) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf)
}

// hostHeader is the Host header for a CONNECT target: the host alone
// for the default ports, host:port otherwise.
func hostHeader(target string) string {
	host, port, _ := net.SplitHostPort(target)
	switch {
	case port != "80" && port != "443":
		return target
	case strings.Contains(host, ":"):
		return "[" + host + "]"
	}
	return host
}

// proxyGet sends GET c.Target in absolute form to the proxy.
func proxyGet(c Check, opt Options, conn net.Conn, br *bufio.Reader) (got, detail string) {
	req, err := http.NewRequest(http.MethodGet, c.Target, nil)
	if err != nil {
		return gotError, "build the request: " + err.Error()
	}
	req.Header.Set("User-Agent", userAgent)
	req.Close = true
	if err := req.WriteProxy(conn); err != nil {
		return gotError, "send GET to the proxy: " + ioError(err, opt.ProxyTimeout)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return gotError, "read the proxy's answer to GET: " + ioError(err, opt.ProxyTimeout)
	}
	defer resp.Body.Close()
	switch {
	case isDenial(resp):
		return string(ExpectDenied), denyReason(resp)
	case resp.StatusCode/100 == 2:
		return string(ExpectAllowed), "GET answered " + resp.Status
	}
	return gotError, "the proxy answered GET with " + statusReason(resp)
}

// isDenial reports a refusal by the proxy: a 403, or another error status
// that carries bundle.DeniedHeader (the bundle's proxy answers a malformed
// target with a 400).
func isDenial(resp *http.Response) bool {
	return resp.StatusCode == http.StatusForbidden ||
		resp.StatusCode >= 400 && resp.Header.Get(bundle.DeniedHeader) != ""
}

// denyReason is the proxy's reason for a denial: bundle.DeniedHeader,
// else the first line of the body.
func denyReason(resp *http.Response) string {
	if h := resp.Header.Get(bundle.DeniedHeader); h != "" {
		return resp.Status + ": " + h
	}
	return statusReason(resp)
}

// statusReason is the status and the first line of the body.
func statusReason(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if line = strings.TrimSpace(line); line != "" {
		return resp.Status + ": " + line
	}
	return resp.Status
}

// ioError words a read or write error, naming a timeout as such.
func ioError(err error, timeout time.Duration) string {
	if isTimeout(err) {
		return fmt.Sprintf("no answer within %s", timeout)
	}
	return err.Error()
}

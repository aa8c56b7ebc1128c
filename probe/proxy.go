package probe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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

package bundle

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Refusals before the handler. net/http's server turns some requests away
// before any handler runs: a malformed request line or header, a missing,
// repeated or malformed Host, a header over MaxHeaderBytes (431), a
// Transfer-Encoding other than chunked (501), an HTTP version other than
// 1.x (505), an Expect other than 100-continue (417). It writes its answer
// straight to the connection and logs nothing, so an agent could send
// such requests and leave no trace. Each client connection of the proxy is
// an auditConn: it knows whether a handler runs for the current request,
// and a status line written when none does is a refusal of the server's,
// logged as a decision (with the status, the client's address and what was
// wrong, never the bytes). A connection that sent part of a request, or
// bytes that are not HTTP (TLS to the plain port), and then closed or went
// quiet is logged too, without a status. A connection that sent nothing is
// not a request and is not logged.

const (
	// maxAuditCapture caps what a connection keeps of a request the
	// handler has not taken yet, to say what was wrong with it: the
	// request line and the first headers. A larger header is classified
	// by the server's words alone.
	maxAuditCapture = 8 << 10
	// maxClientLen caps a logged client address.
	maxClientLen = 64
)

// auditListener makes each connection of its limitListener an auditConn.
type auditListener struct {
	net.Listener
	dl *decisionLog
}

func (l auditListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*trackedConn)
		if !ok { // a limitListener's connections are *trackedConn
			_ = c.Close()
			continue
		}
		return &auditConn{trackedConn: tc, dl: l.dl}, nil
	}
}

// auditConn is a proxy client connection that logs the requests net/http
// refuses before the handler. It embeds *trackedConn, so it keeps
// *net.TCPConn's methods (the half-close tunnels use).
type auditConn struct {
	*trackedConn
	dl *decisionLog
	// handled is set when a handler starts on the current request, and
	// cleared when the connection goes idle for the next one; while it is
	// set, reads and writes belong to the handler and are not watched.
	handled atomic.Bool

	mu sync.Mutex
	// buf is what was read of the current request, up to maxAuditCapture;
	// n counts every byte.
	buf     []byte
	n       int64
	readErr error // how the last read failed, if it did
	logged  bool  // the current request's refusal is logged
}

// handle marks the request a handler runs for: nothing it writes is a
// refusal of the server's.
func (c *auditConn) handle() {
	c.handled.Store(true)
	c.mu.Lock()
	c.buf, c.n, c.readErr = nil, 0, nil
	c.mu.Unlock()
}

// idle starts the next request: the server waits for it.
func (c *auditConn) idle() {
	c.mu.Lock()
	c.buf, c.n, c.readErr, c.logged = nil, 0, nil, false
	c.mu.Unlock()
	c.handled.Store(false)
}

func (c *auditConn) Read(b []byte) (int, error) {
	n, err := c.trackedConn.Read(b)
	if c.handled.Load() {
		return n, err
	}
	c.mu.Lock()
	if room := maxAuditCapture - len(c.buf); room > 0 {
		c.buf = append(c.buf, b[:min(n, room)]...)
	}
	c.n += int64(n)
	if err != nil {
		c.readErr = err
	}
	c.mu.Unlock()
	return n, err
}

// Write logs a status line the server writes when no handler runs: its
// refusal. The server writes each such answer in one Write (fmt.Fprintf to
// the connection, or a flush of its buffer for a 417).
func (c *auditConn) Write(b []byte) (int, error) {
	if !c.handled.Load() {
		if status, text, ok := parseStatusLine(b); ok {
			c.refusal(status, text)
		}
	}
	return c.trackedConn.Write(b)
}

// Close logs a request cut short: bytes read, no handler, no answer.
func (c *auditConn) Close() error {
	if !c.handled.Load() {
		c.refusal(0, "")
	}
	return c.trackedConn.Close()
}

// refusal logs the current request's refusal once: answered status (0:
// none, and then only if the client sent something) with the server's
// words text.
func (c *auditConn) refusal(status int, text string) {
	c.mu.Lock()
	if c.logged || status == 0 && c.n == 0 {
		c.mu.Unlock()
		return
	}
	c.logged = true
	buf, truncated, readErr := c.buf, c.n > int64(len(c.buf)), c.readErr
	c.mu.Unlock()
	method, host, port := requestFacts(buf)
	c.dl.refused(c.RemoteAddr().String(), status, method, host, port, refusalReason(buf, truncated, status, text, readErr))
}

// parseStatusLine reads "HTTP/1.x NNN text\r\n" at the start of b.
func parseStatusLine(b []byte) (status int, text string, ok bool) {
	if len(b) < 13 || !bytes.HasPrefix(b, []byte("HTTP/1.")) || b[8] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(b[9:12]))
	if err != nil || status < 100 || status > 599 || b[12] != ' ' && b[12] != '\r' {
		return 0, "", false
	}
	rest := b[12:]
	if i := bytes.IndexByte(rest, '\r'); i >= 0 {
		rest = rest[:i]
	}
	return status, strings.TrimSpace(string(rest)), true
}

// Words of net/http's server (statusError's text), after "400 Bad Request: ".
var serverWords = map[string]string{
	"missing required Host header": "the request has no Host header, which HTTP/1.1 requires",
	"malformed Host header":        "the request's Host header is not a valid host",
	"invalid header name":          "a header's name holds a byte a header name cannot",
	"invalid header value":         "a header's value holds a control character",
}

// refusalReason says what was wrong with a request the server answered
// status (with its status line's text), or that it did not finish (status
// 0, readErr how reading it ended). It quotes no byte of buf.
func refusalReason(buf []byte, truncated bool, status int, text string, readErr error) string {
	if looksLikeTLS(buf) {
		return "the client sent TLS to the proxy's plain HTTP port; HTTPS goes through CONNECT host:443"
	}
	switch status {
	case 0:
		return cutShortReason(buf, readErr)
	case http.StatusRequestHeaderFieldsTooLarge:
		return fmt.Sprintf("the request's line and header are larger than %d KiB", maxHeaderBytes>>10)
	case http.StatusNotImplemented:
		return "the request's Transfer-Encoding is not chunked, the only one the proxy takes"
	case http.StatusHTTPVersionNotSupported:
		return "the request's HTTP version is not 1.0 or 1.1"
	case http.StatusExpectationFailed:
		return "the request's Expect header is not 100-continue"
	case http.StatusBadRequest:
		_, words, _ := strings.Cut(text, ": ")
		if r, ok := serverWords[words]; ok {
			return r
		}
		return malformedReason(buf, truncated, readErr)
	}
	return fmt.Sprintf("the proxy's HTTP server refused the request (%d %s)", status, http.StatusText(status))
}

// malformedReason re-reads the request as the server did, to say what in
// it is not HTTP; it quotes nothing of it.
func malformedReason(buf []byte, truncated bool, readErr error) string {
	const generic = "the request is not well-formed HTTP"
	_, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf)))
	var pe textproto.ProtocolError
	var ue *url.Error
	switch {
	case err == nil:
		return generic
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if truncated {
			return generic
		}
		return cutShortReason(buf, readErr) // the server read EOF too
	case strings.HasPrefix(err.Error(), "malformed HTTP request"):
		return "the request line is not METHOD TARGET HTTP/VERSION"
	case strings.HasPrefix(err.Error(), "invalid method"):
		return "the request's method is not a valid HTTP method name"
	case strings.HasPrefix(err.Error(), "malformed HTTP version"):
		return "the request's HTTP version is malformed"
	case errors.As(err, &ue):
		return "the request's target is not a URL, a path or host:port"
	case err.Error() == "too many Host headers":
		return "the request has more than one Host header"
	case errors.As(err, &pe):
		return "a header line of the request is malformed"
	case strings.Contains(err.Error(), "Content-Length"):
		return "the request's Content-Length is not a number, or differs between its copies"
	case strings.Contains(strings.ToLower(err.Error()), "trailer"):
		return "the request's Trailer header names a field a trailer cannot hold"
	}
	return generic
}

// cutShortReason says how a request that was never whole ended.
func cutShortReason(buf []byte, readErr error) string {
	what := "part of a request"
	if !looksLikeHTTP(buf) {
		what = "bytes that are not HTTP"
	}
	var ne net.Error
	switch {
	case errors.As(readErr, &ne) && ne.Timeout():
		return fmt.Sprintf("the client sent %s and no whole request header within %s", what, readHeaderTimeout)
	case errors.Is(readErr, io.EOF) || errors.Is(readErr, syscall.ECONNRESET):
		return fmt.Sprintf("the client sent %s, then closed the connection", what)
	}
	return fmt.Sprintf("the client sent %s; the connection closed before it was whole", what)
}

// looksLikeTLS: a TLS handshake record (a ClientHello) starts 0x16 0x03.
func looksLikeTLS(b []byte) bool { return len(b) >= 2 && b[0] == 0x16 && b[1] == 0x03 }

// looksLikeHTTP: what was read starts with a method, a space, or is a
// beginning of one.
func looksLikeHTTP(b []byte) bool {
	for i, c := range b {
		switch {
		case c == ' ' && i > 0:
			return true
		case c < 'A' || c > 'Z':
			return false
		}
	}
	return len(b) > 0
}

// requestFacts is the method, host and port of a request's first line
// (and Host header), when its line is METHOD TARGET HTTP/...; the host as
// shownHost makes it, as the handler's denials log it.
func requestFacts(buf []byte) (method, host string, port int) {
	lineEnd := bytes.IndexByte(buf, '\n')
	if lineEnd < 0 {
		return "", "", 0
	}
	parts := strings.Split(strings.TrimSuffix(string(buf[:lineEnd]), "\r"), " ")
	if len(parts) != 3 || !isToken(parts[0]) || !strings.HasPrefix(parts[2], "HTTP/") {
		return "", "", 0
	}
	method, target := parts[0], parts[1]
	var h, p string
	switch {
	case method == http.MethodConnect && !strings.HasPrefix(target, "/"):
		var err error
		if h, p, err = net.SplitHostPort(target); err != nil {
			h, p = strings.Trim(target, "[]"), ""
		}
	case strings.Contains(target, "://"):
		u, err := url.Parse(target)
		if err != nil {
			return method, "", 0
		}
		h, p = u.Hostname(), u.Port()
		if p == "" && strings.EqualFold(u.Scheme, "http") {
			p = "80"
		} else if p == "" && strings.EqualFold(u.Scheme, "https") {
			p = "443"
		}
	default:
		hv, ok := firstHost(buf[lineEnd+1:])
		if !ok {
			return method, "", 0
		}
		var err error
		if h, p, err = net.SplitHostPort(hv); err != nil {
			h, p = hv, ""
		}
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		port = 0
	}
	return method, shownHost(h), port
}

// firstHost is the value of the first Host header line in a header.
func firstHost(header []byte) (string, bool) {
	for len(header) > 0 {
		l := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			l, header = header[:i], header[i+1:]
		} else {
			header = nil
		}
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(k), "Host") {
			return strings.TrimSpace(string(v)), true
		}
	}
	return "", false
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/bottle-apply/bottle-apply/spec"
)

// DeniedHeader is set on the proxy's denials (403, and 400 for requests
// it cannot take) to a short reason: no-matching-rule, address-not-allowed,
// blocked-address, proxy-itself, not-a-proxy-request, bad-target, or
// host-mismatch, credential-needs-tls and trace-with-credential for
// credentialed hosts.
const DeniedHeader = "X-Bottle-Apply-Denied"

const (
	deniedNoRule    = "no-matching-rule"
	deniedAddress   = "address-not-allowed"
	deniedBlocked   = "blocked-address"
	deniedSelf      = "proxy-itself"
	deniedNotProxy  = "not-a-proxy-request"
	deniedBadTarget = "bad-target"
)

const (
	// The spec fields the denials point to.
	allowRulesField = "spec.bundle.egress.allow"
	allowCIDRsField = "spec.network.allowCIDRs"
	// maxErrorBodyBytes caps the error text in a 502.
	maxErrorBodyBytes = 4 << 10
	// maxHeaderBytes caps a request's line and header, so a request names
	// a host of at most about 64 KiB (and checkHost refuses any beyond 253
	// bytes).
	maxHeaderBytes = 64 << 10
	// readHeaderTimeout bounds how long a client may take to send a
	// request's header.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a keep-alive connection left unused.
	idleTimeout = 2 * time.Minute
)

// verdict is the egress policy's answer for one request.
type verdict struct {
	method string
	host   string // lower case, no brackets, no trailing dot
	port   int
	// rule allowed the request: an egress rule or an allowCIDR.
	rule string
	// status is 0 when allowed, else the HTTP status of the denial.
	status int
	short  string // DeniedHeader value
	reason string
}

func (v *verdict) allowed() bool { return v.status == 0 }

func (v *verdict) target() string {
	if v.port == 0 {
		return v.host
	}
	return net.JoinHostPort(v.host, strconv.Itoa(v.port))
}

func (v *verdict) deny(status int, short, reason string) {
	v.rule, v.status, v.short, v.reason = "", status, short, reason
}

// denyBlocked denies for an address the policy refused to dial: one it
// never connects to (blocked-address), or one outside what the spec allows
// (address-not-allowed).
func (v *verdict) denyBlocked(b *blockedError) {
	if b.never {
		v.deny(http.StatusForbidden, deniedBlocked, b.Error()+"; the proxy never connects there")
	} else {
		v.deny(http.StatusForbidden, deniedAddress, b.Error())
	}
}

// egress is the HTTP proxy: goproxy does the proxying, egress decides.
type egress struct {
	p    *policy
	dl   *decisionLog
	d    dialer
	self netip.AddrPort // the proxy's own address
	ln   net.Listener
	srv  *http.Server
	// conns are the client connections, hijacked CONNECT tunnels included,
	// which http.Server forgets; shutdown closes what is left.
	conns *connSet
	// base is every request's context; cancelled after the grace period.
	base       context.Context
	cancelBase context.CancelFunc
}

func listenEgress(p *policy, dl *decisionLog) (*egress, error) {
	addr := netip.AddrPortFrom(p.listenIP, p.proxyPort)
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("egress: listen on %s: %w", addr, err)
	}
	e := &egress{p: p, dl: dl, conns: &connSet{m: map[*trackedConn]struct{}{}}}
	e.self = netip.MustParseAddrPort(ln.Addr().String())
	// Every client connection is an auditConn (refusal.go): the requests
	// net/http refuses before the handler are logged too.
	e.ln = auditListener{Listener: newLimitListener(ln, p.maxConns, e.conns), dl: dl}
	e.d = dialer{lookup: p.lookup, check: func(ap netip.AddrPort, named bool) (string, bool) {
		return p.checkDial(ap, named, e.self)
	}}
	e.base, e.cancelBase = context.WithCancel(context.Background())
	e.srv = &http.Server{
		Handler:           e.audited(e.proxy()),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          httpErrorLog(dl.log, spec.DaemonEgress),
		BaseContext:       func(net.Listener) context.Context { return e.base },
		// The request's client connection, which an idle tunnel closes.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, clientConnKey{}, c)
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if ac, ok := c.(*auditConn); ok {
				ac.state.Store(int32(s))
				if s == http.StateIdle {
					ac.idle()
				}
			}
		},
	}
	return e, nil
}

func (e *egress) addr() string { return e.self.String() }

func (e *egress) serve() error {
	if err := e.srv.Serve(e.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("egress: %w", err)
	}
	return nil
}

func (e *egress) shutdown(ctx context.Context) {
	_ = e.ln.Close() // when serve never ran
	// http.Server waits up to 5s for a connection that has not sent its
	// first request; nothing is in flight on it.
	e.conns.closeNew()
	if err := e.srv.Shutdown(ctx); err != nil {
		_ = e.srv.Close()
	}
	e.cancelBase()
	e.conns.closeAll()
}

// proxy builds the goproxy server: no dial of its own, no proxy from the
// environment, no logging, no MITM.
func (e *egress) proxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = nopLogger{}
	gp.Verbose = false
	gp.ConnectDial = nil // it reads HTTPS_PROXY otherwise
	gp.ConnectDialWithReq = nil
	gp.KeepAcceptEncoding = true
	// Every allowed request dials through its own ProxyCtx.Dialer or
	// RoundTripper; the shared transport never does.
	gp.Tr = &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("internal: the egress proxy dialled without a decision")
	}}
	gp.NonproxyHandler = http.HandlerFunc(e.nonProxy)
	gp.ConnectionErrHandler = e.connectError
	gp.OnRequest().HandleConnectFunc(e.onConnect)
	gp.OnRequest().DoFunc(e.onRequest)
	return gp
}

// audited marks each request's connection as taken by the handler before
// h runs: what it answers is logged by the policy, not as a refusal of the
// server's.
func (e *egress) audited(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ac, ok := clientConn(r).(*auditConn); ok {
			ac.handle()
		}
		h.ServeHTTP(w, r)
	})
}

// clientConnKey holds a request's client connection in its context.
type clientConnKey struct{}

func clientConn(r *http.Request) net.Conn {
	c, _ := r.Context().Value(clientConnKey{}).(net.Conn)
	return c
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// attempt is one allowed request on its way out: its dial logs the
// decision, once. The dial may run on a transport goroutine, hence mu.
type attempt struct {
	e    *egress
	host string
	port int
	// client is the client's connection, closed with an idle tunnel.
	client net.Conn
	once   sync.Once

	mu      sync.Mutex
	v       verdict // turns into a denial when the address policy refuses the dial
	blocked bool
	dialErr error
	dialed  bool
}

func newAttempt(e *egress, v verdict, client net.Conn) *attempt {
	return &attempt{e: e, host: v.host, port: v.port, v: v, client: client}
}

// dial is the request's only way out. The connection it makes closes
// itself, and the client's, after e.p.tunnelIdle without a byte either way.
func (a *attempt) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, err := a.e.d.dial(ctx, a.host, a.port)
	a.mu.Lock()
	b, blocked := err.(*blockedError)
	switch {
	case blocked:
		a.blocked = true
		a.v.denyBlocked(b)
	case err != nil:
		a.dialErr = err
	default:
		a.dialed = true
		method, log := a.v.method, a.e.dl.log
		c = newIdleConn(c, a.client, a.e.p.tunnelIdle, func() {
			log.Info().Str(FieldDaemon, spec.DaemonEgress).Str(FieldHost, a.host).Int(FieldPort, a.port).
				Str(FieldMethod, logSafe(method, maxMethodLen)).Str("idle", a.e.p.tunnelIdle.String()).
				Msg("egress connection idle, closed")
		})
	}
	a.mu.Unlock()
	a.record()
	if err != nil && !blocked {
		a.e.dl.log.Warn().Str(FieldDaemon, spec.DaemonEgress).Str(FieldHost, a.host).Int(FieldPort, a.port).
			Err(err).Msg("egress dial failed")
	}
	return c, err
}

// outcome is the verdict after the dial, and how the dial went.
func (a *attempt) outcome() (v verdict, blocked bool, dialErr error, dialed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.v, a.blocked, a.dialErr, a.dialed
}

func (a *attempt) record() {
	a.once.Do(func() {
		v, _, _, _ := a.outcome()
		a.e.dl.egress(v.method, v.host, v.port, v.rule, v.reason)
	})
}

func (e *egress) onConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	v := e.decide(ctx.Req)
	if !v.allowed() {
		e.dl.egress(v.method, v.host, v.port, "", v.reason)
		ctx.Resp = e.denial(ctx.Req, &v)
		ctx.Resp.Close = true // goproxy closes the connection after it
		return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, host
	}
	a := newAttempt(e, v, clientConn(ctx.Req))
	ctx.UserData = a
	if creds := e.p.credentialsFor(v.host); creds != nil {
		// A credentialed host's tunnel is ended here (credential.go).
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: e.intercept(a, creds)}, v.target()
	}
	if k := e.p.sniffFor(v.host, v.port); k != sniffNone {
		// Checked tunnels (sniff.go): the first bytes, then the dial.
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: e.checkedTunnel(a, k)}, v.target()
	}
	ctx.Dialer = a.dial
	return &goproxy.ConnectAction{Action: goproxy.ConnectAccept}, v.target()
}

// connectError answers a CONNECT whose dial failed: 403 when the address
// policy refused it, else 502.
func (e *egress) connectError(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
	a, ok := ctx.UserData.(*attempt)
	if !ok {
		return
	}
	v, blocked, _, dialed := a.outcome()
	if dialed {
		return // the tunnel is up: nothing may be written into it
	}
	var resp *http.Response
	if blocked {
		resp = e.denial(ctx.Req, &v)
	} else {
		resp = e.badGateway(ctx.Req, &v, err)
	}
	resp.Close = true
	_ = resp.Write(w)
}

func (e *egress) onRequest(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	v := e.decide(r)
	if !v.allowed() {
		e.dl.egress(v.method, v.host, v.port, "", v.reason)
		return r, e.denial(r, &v)
	}
	if e.p.credentialsFor(v.host) != nil {
		v.deny(http.StatusForbidden, deniedCredentialTLS, fmt.Sprintf(
			"%s gets a credential, which travels only over TLS: use https:// (a CONNECT through the proxy), not a plain proxy request", v.host))
		e.dl.egress(v.method, v.host, v.port, "", v.reason)
		return r, e.denial(r, &v)
	}
	// A proxy uses the absolute URI's host, not the Host header (RFC 9112
	// 3.2.2): the request goes where it was allowed to.
	r.Host = r.URL.Host
	a := newAttempt(e, v, clientConn(r))
	ctx.UserData = a
	ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		// A transport per request, without keep-alive: every request
		// resolves and dials anew, under the policy.
		tr := &http.Transport{
			DialContext:            a.dial,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			TLSHandshakeTimeout:    dialTimeout,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: 1 << 20,
		}
		defer tr.CloseIdleConnections()
		resp, err := tr.RoundTrip(req)
		a.record()
		if err == nil {
			return resp, nil
		}
		v, blocked, dialErr, _ := a.outcome()
		switch {
		case blocked:
			return e.denial(req, &v), nil
		case dialErr != nil:
			return e.badGateway(req, &v, dialErr), nil
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text holds the URL, which may hold secrets
		}
		return e.badGateway(req, &v, err), nil
	})
	return r, nil
}

// nonProxy answers origin-form requests ("GET /"): the proxy serves
// nothing itself.
func (e *egress) nonProxy(w http.ResponseWriter, r *http.Request) {
	v := verdict{method: r.Method}
	h, p, err := net.SplitHostPort(r.Host)
	if err != nil {
		h = r.Host
	}
	v.host = shownHost(h)
	v.port, _ = strconv.Atoi(p)
	v.deny(http.StatusBadRequest, deniedNotProxy, "not a proxy request: the request line has a path, not an absolute URL (http://host/...) or CONNECT host:port")
	e.dl.egress(v.method, v.host, v.port, "", v.reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set(DeniedHeader, v.short)
	w.WriteHeader(v.status)
	fmt.Fprintf(w, "bottle-apply egress proxy (bottle %s): denied %s: %s.\n"+
		"This is an HTTP proxy: point HTTP_PROXY and HTTPS_PROXY at http://%s.\n",
		e.p.bottle, r.Method, v.reason, e.self)
}

// shownHost is a refused request's host as its denial and decision line
// name it: normalized and at most maxHostLen bytes.
func shownHost(h string) string { return clip(spec.NormalizeHost(h), maxHostLen) }

// decide applies the policy to a proxy request: CONNECT host:port, or an
// absolute URL.
func (e *egress) decide(r *http.Request) verdict {
	v := verdict{method: r.Method}
	var host, port string
	if r.Method == http.MethodConnect {
		h, p, err := net.SplitHostPort(r.URL.Host)
		if err != nil || h == "" {
			if err != nil {
				h = strings.Trim(r.URL.Host, "[]")
			}
			v.host = shownHost(h)
			v.deny(http.StatusBadRequest, deniedBadTarget, fmt.Sprintf("CONNECT target %s is not host:port", quoteClip(r.URL.Host)))
			return v
		}
		host, port = h, p
	} else {
		switch strings.ToLower(r.URL.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			v.host = shownHost(r.URL.Hostname())
			v.deny(http.StatusBadRequest, deniedBadTarget, fmt.Sprintf("scheme %s is not proxied; use http:// URLs, or CONNECT for anything else", quoteClip(r.URL.Scheme)))
			return v
		}
		host = r.URL.Hostname()
		if p := r.URL.Port(); p != "" {
			port = p
		}
	}
	n, err := strconv.Atoi(port)
	portOK := err == nil && n >= 1 && n <= 65535
	if portOK {
		v.port = n
	}
	// A bad host is refused before anything logs or quotes it whole.
	v.host = spec.NormalizeHost(host)
	if msg := checkHost(v.host); msg != "" {
		v.host = clip(v.host, maxHostLen)
		v.deny(http.StatusBadRequest, deniedBadTarget, msg)
		return v
	}
	if !portOK {
		v.deny(http.StatusBadRequest, deniedBadTarget, fmt.Sprintf("port %s is not a number from 1 to 65535", quoteClip(port)))
		return v
	}
	e.p.decideTarget(&v, e.self)
	return v
}

// decideTarget applies the rules (names) or the allowCIDRs and the address
// policy (IP literals) to v.host and v.port.
func (p *policy) decideTarget(v *verdict, self netip.AddrPort) {
	ip, err := netip.ParseAddr(v.host)
	if err != nil {
		if r, ok := p.rules.Match(v.host, v.port); ok {
			// The proxy's lookup of the name is a lookup as the DNS
			// daemon's are: the same limits, before any query.
			if reason := p.names.check(v.host, r); reason != "" {
				v.deny(http.StatusForbidden, deniedNameLimit, reason)
				return
			}
			v.rule = r.String()
			return
		}
		reason := fmt.Sprintf("no rule in %s allows %s", allowRulesField, v.target())
		if r, ok := p.rules.MatchHost(v.host); ok {
			reason += fmt.Sprintf(" (rule %s allows other ports)", r)
		}
		v.deny(http.StatusForbidden, deniedNoRule, reason)
		return
	}
	ip = ip.Unmap()
	v.host = ip.String()
	ap := netip.AddrPortFrom(ip, uint16(v.port))
	if ip == self.Addr() && ap.Port() == self.Port() {
		v.deny(http.StatusForbidden, deniedSelf, fmt.Sprintf("%s is this egress proxy itself", v.target()))
		return
	}
	for _, c := range p.cidrs {
		if !c.Contains(ip) {
			continue
		}
		// Some addresses never, even inside an allowCIDR.
		kind := p.hostKind(ip)
		if kind == "" {
			kind = p.checkAddr(ap)
		}
		if kind != "" {
			v.deny(http.StatusForbidden, deniedBlocked, fmt.Sprintf("%s is %s; the proxy never connects there", ip, kind))
			return
		}
		v.rule = c.String()
		return
	}
	v.deny(http.StatusForbidden, deniedAddress, fmt.Sprintf("no range in %s holds %s", allowCIDRsField, ip))
}

// denial is the answer to a denied request: text/plain, naming the
// target (never the path) and the reason.
func (e *egress) denial(r *http.Request, v *verdict) *http.Response {
	resp := e.textResponse(r, v.status, fmt.Sprintf("bottle-apply egress proxy (bottle %s): denied %s %s: %s\n",
		e.p.bottle, v.method, v.target(), v.reason))
	resp.Header.Set(DeniedHeader, v.short)
	return resp
}

func (e *egress) badGateway(r *http.Request, v *verdict, err error) *http.Response {
	msg := err.Error()
	if len(msg) > maxErrorBodyBytes {
		msg = msg[:maxErrorBodyBytes]
	}
	return e.textResponse(r, http.StatusBadGateway, fmt.Sprintf("bottle-apply egress proxy (bottle %s): %s %s: cannot reach it: %s\n",
		e.p.bottle, v.method, v.target(), msg))
}

func (e *egress) textResponse(r *http.Request, status int, body string) *http.Response {
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:          io.NopCloser(bytes.NewBufferString(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}
}

// connSet tracks the proxy's client connections.
type connSet struct {
	mu     sync.Mutex
	m      map[*trackedConn]struct{}
	closed bool
}

func (s *connSet) add(c *trackedConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c *trackedConn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// closeNew closes the connections that have not sent a request yet.
func (s *connSet) closeNew() {
	s.mu.Lock()
	var cs []*trackedConn
	for c := range s.m {
		if http.ConnState(c.state.Load()) == http.StateNew {
			cs = append(cs, c)
		}
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	cs := make([]*trackedConn, 0, len(s.m))
	for c := range s.m {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// goproxy's own messages stay off: they may quote URLs.
var _ goproxy.Logger = nopLogger{}

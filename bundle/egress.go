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
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/bottle-apply/bottle-apply/spec"
)

// DeniedHeader is set on the proxy's denials (403, and 400 for requests
// it cannot take) to a short reason: no-matching-rule, address-not-allowed,
// blocked-address, proxy-itself, not-a-proxy-request or bad-target.
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
	e.ln = &trackingListener{Listener: ln, set: e.conns}
	e.d = dialer{lookup: p.lookup, check: func(ap netip.AddrPort) string {
		if ap.Addr().Unmap() == e.self.Addr() && ap.Port() == e.self.Port() {
			return "the egress proxy itself"
		}
		return p.checkAddr(ap)
	}}
	e.base, e.cancelBase = context.WithCancel(context.Background())
	e.srv = &http.Server{
		Handler:           e.proxy(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          httpErrorLog(dl.log, spec.DaemonEgress),
		BaseContext:       func(net.Listener) context.Context { return e.base },
		ConnState: func(c net.Conn, s http.ConnState) {
			if tc, ok := c.(*trackedConn); ok {
				tc.state.Store(int32(s))
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

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// attempt is one allowed request on its way out: its dial logs the
// decision, once. The dial may run on a transport goroutine, hence mu.
type attempt struct {
	e    *egress
	host string
	port int
	once sync.Once

	mu      sync.Mutex
	v       verdict // turns into a denial when the address policy refuses the dial
	blocked bool
	dialErr error
	dialed  bool
}

func newAttempt(e *egress, v verdict) *attempt {
	return &attempt{e: e, host: v.host, port: v.port, v: v}
}

// dial is the request's only way out.
func (a *attempt) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, err := a.e.d.dial(ctx, a.host, a.port)
	a.mu.Lock()
	b, blocked := err.(*blockedError)
	switch {
	case blocked:
		a.blocked = true
		a.v.deny(http.StatusForbidden, deniedBlocked, b.Error()+"; the proxy never connects there")
	case err != nil:
		a.dialErr = err
	default:
		a.dialed = true
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
	a := newAttempt(e, v)
	ctx.UserData = a
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
	// A proxy uses the absolute URI's host, not the Host header (RFC 9112
	// 3.2.2): the request goes where it was allowed to.
	r.Host = r.URL.Host
	a := newAttempt(e, v)
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
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		v.host = spec.NormalizeHost(h)
		v.port, _ = strconv.Atoi(p)
	} else {
		v.host = spec.NormalizeHost(r.Host)
	}
	v.deny(http.StatusBadRequest, deniedNotProxy, "not a proxy request: the request line has a path, not an absolute URL (http://host/...) or CONNECT host:port")
	e.dl.egress(v.method, v.host, v.port, "", v.reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set(DeniedHeader, v.short)
	w.WriteHeader(v.status)
	fmt.Fprintf(w, "bottle-apply egress proxy (bottle %s): denied %s: %s.\n"+
		"This is an HTTP proxy: point HTTP_PROXY and HTTPS_PROXY at http://%s.\n",
		e.p.bottle, r.Method, v.reason, e.self)
}

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
			v.host = spec.NormalizeHost(h)
			v.deny(http.StatusBadRequest, deniedBadTarget, fmt.Sprintf("CONNECT target %q is not host:port", r.URL.Host))
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
			v.host = spec.NormalizeHost(r.URL.Hostname())
			v.deny(http.StatusBadRequest, deniedBadTarget, fmt.Sprintf("scheme %q is not proxied; use http:// URLs, or CONNECT for anything else", r.URL.Scheme))
			return v
		}
		host = r.URL.Hostname()
		if p := r.URL.Port(); p != "" {
			port = p
		}
	}
	v.host = spec.NormalizeHost(host)
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		v.deny(http.StatusBadRequest, deniedBadTarget, fmt.Sprintf("port %q is not a number from 1 to 65535", port))
		return v
	}
	v.port = n
	if v.host == "" {
		v.deny(http.StatusBadRequest, deniedBadTarget, "the request names no host")
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
		if kind := p.checkAddr(ap); kind != "" {
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

type trackingListener struct {
	net.Listener
	set *connSet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		w := &trackedConn{TCPConn: tc, set: l.set}
		if l.set.add(w) {
			return w, nil
		}
		_ = c.Close() // shutting down
	}
}

// trackedConn keeps *net.TCPConn's methods (CloseWrite and CloseRead
// included, which goproxy's tunnels use to half-close) and leaves the set
// when closed.
type trackedConn struct {
	*net.TCPConn
	set   *connSet
	state atomic.Int32 // http.ConnState; 0 is StateNew
}

func (c *trackedConn) Close() error {
	c.set.remove(c)
	return c.TCPConn.Close()
}

// goproxy's own messages stay off: they may quote URLs.
var _ goproxy.Logger = nopLogger{}

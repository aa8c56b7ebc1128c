package bundle

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Credentials the agent never holds (spec.bundle.egress.credentials). For
// a credentialed host, and only for it, an allowed CONNECT is not a
// tunnel: the proxy answers 200, checks the ClientHello's SNI as a checked
// tunnel does (an SNI may be left out, but not name another host), ends
// the agent's TLS with a certificate of the bottle's CA for the CONNECT
// host, and serves HTTP/1.1 or HTTP/2 (ALPN) on it. Each request whose
// Host (:authority) is the CONNECT host, on the CONNECT port if it names
// one, gets the credential's header in place of whatever the agent sent
// for it, and goes upstream over the proxy's own TLS connection, verified
// against the roots of golang.org/x/crypto/x509roots/fallback and the
// spec's trust, through the same address policy as any other dial.
// Anything else is refused with no header added and nothing sent. The
// proxy never follows a redirect: a 3xx goes back to the agent as it is.

const (
	deniedCredentialTLS = "credential-needs-tls"
	deniedHandshake     = "tls-handshake"
	deniedTrace         = "trace-with-credential"
	// maxPathLen caps a path in a decision line.
	maxPathLen = 256
	// maxCredentialUpstreamConns caps the upstream connections of one
	// intercepted tunnel: an HTTP/2 agent may run many streams at once.
	maxCredentialUpstreamConns = 16
	// maxCredentialStreams caps the HTTP/2 streams of one intercepted
	// tunnel that are open at once (Go's default is 250): each holds a
	// handler, a request header of up to maxHeaderBytes and a request
	// upstream, and maxProxyConns tunnels may be open.
	maxCredentialStreams = 32
)

// FieldCredential and FieldPath are set on the decision lines of requests
// inside an intercepted tunnel: the credential added (host and header
// names, never the value) and the request's path without its query.
const (
	FieldCredential = "credential"
	FieldPath       = "path"
)

// credentials are what BOTTLE_CREDENTIALS_FILE gives the proxy.
type credentials struct {
	issuer *ca.Issuer
	// roots verify the upstreams of intercepted tunnels.
	roots  *x509.CertPool
	byHost map[string][]bottle.BundleCredential
}

// credentialsFor returns the credentials of host (a verdict's: lower
// case, no trailing dot), nil when it has none.
func (p *policy) credentialsFor(host string) []bottle.BundleCredential {
	if p.creds == nil {
		return nil
	}
	return p.creds.byHost[host]
}

// loadCredentials reads the credentials file at path. Its errors name the
// file and the field at fault, never what the file holds.
func loadCredentials(path string, now time.Time, base func() *x509.CertPool) (*credentials, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("BOTTLE_CREDENTIALS_FILE %s: %s; apply the bottle again to have it rewritten", path, fmt.Sprintf(format, args...))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fail("cannot read it: %v", err)
	}
	var f bottle.BundleSecrets
	if err := json.Unmarshal(data, &f); err != nil {
		// The decoder's own words may quote a byte of the file.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fail("not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return nil, fail("field %s is not a %s", te.Field, te.Type)
		}
		return nil, fail("not valid JSON")
	}
	if len(f.Credentials) == 0 {
		return nil, fail("it holds no credentials")
	}
	issuer, err := ca.NewIssuer([]byte(f.CACert), []byte(f.CAKey))
	if err != nil {
		return nil, fail("%v", err)
	}
	c := &credentials{issuer: issuer, byHost: map[string][]bottle.BundleCredential{}}
	for i, bc := range f.Credentials {
		host := spec.NormalizeHost(bc.Host)
		if msg := checkHost(host); msg != "" || isIP(host) {
			return nil, fail("credentials[%d]: the host is not a host name", i)
		}
		if msg := spec.CheckCredentialHeader(bc.Header); msg != "" {
			return nil, fail("credentials[%d] (%s): header %s", i, host, msg)
		}
		switch {
		case bc.Value == "":
			return nil, fail("credentials[%d] (%s %s): the value is empty", i, host, bc.Header)
		case !validHeaderValue(bc.Prefix + bc.Value):
			return nil, fail("credentials[%d] (%s %s): the prefix or value holds a control character or a line break, which a header may not", i, host, bc.Header)
		}
		for _, o := range c.byHost[host] {
			if strings.EqualFold(o.Header, bc.Header) {
				return nil, fail("credentials[%d]: host %s has two credentials for header %s; keep one", i, host, bc.Header)
			}
		}
		if _, err := issuer.Certificate(host, now); err != nil {
			return nil, fail("credentials[%d]: %v", i, err)
		}
		bc.Host = host
		c.byHost[host] = append(c.byHost[host], bc)
	}
	if base == nil {
		base = ca.FallbackRoots
	}
	c.roots = base()
	if err := addTrust(c.roots, []byte(f.Trust)); err != nil {
		return nil, fail("trust: %v", err)
	}
	return c, nil
}

// addTrust adds the PEM certificates of trust to pool.
func addTrust(pool *x509.CertPool, trust []byte) error {
	for i := 0; ; i++ {
		var b *pem.Block
		b, trust = pem.Decode(trust)
		if b == nil {
			if len(bytes.TrimSpace(trust)) > 0 {
				return fmt.Errorf("text after certificate %d is not PEM", i)
			}
			return nil
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("block %d is a %s, not a CERTIFICATE", i+1, quoteClip(b.Type))
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("certificate %d does not parse: %w", i+1, err)
		}
		pool.AddCert(cert)
	}
}

func isIP(host string) bool { return net.ParseIP(host) != nil }

// validHeaderValue reports whether v may be a header's value: no control
// character but tab, no DEL.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// credentialNames is how decision lines name creds: the host and each
// header, never a value.
func credentialNames(creds []bottle.BundleCredential) string {
	names := make([]string, len(creds))
	for i, c := range creds {
		names[i] = strings.ToLower(c.Header)
	}
	return creds[0].Host + " " + strings.Join(names, ",")
}

// intercept answers an allowed CONNECT to a credentialed host.
func (e *egress) intercept(a *attempt, creds []bottle.BundleCredential) func(*http.Request, net.Conn, *goproxy.ProxyCtx) {
	return func(r *http.Request, client net.Conn, ctx *goproxy.ProxyCtx) {
		defer client.Close()
		if err := a.preflight(r.Context()); err != nil {
			if _, blocked, _, _ := a.outcome(); blocked {
				e.connectError(client, ctx, err) // a 403, as for any tunnel
				return
			}
			// The upstream cannot be reached now: the tunnel is intercepted
			// all the same, and each request is answered 502 with why. The
			// self-test's handshake proves the interception without the
			// upstream.
		}
		if _, err := io.WriteString(client, connectOK(r)); err != nil {
			return
		}
		_ = client.SetReadDeadline(time.Now().Add(e.p.sniffTimeout))
		raw, sni, err := readClientHello(client)
		why := ""
		switch {
		case err != nil:
			why = e.sniffError("TLS ClientHello", err)
		case sni != "" && spec.NormalizeHost(sni) != a.host:
			// No hole of a test build opens this: it is where a credential
			// could go to another host.
			why = fmt.Sprintf("the TLS ClientHello names %s, not the CONNECT host %s, whose requests get a credential", quoteClip(shownHost(sni)), a.host)
		}
		if why != "" {
			a.refuseWith(deniedSNI, why)
			_ = client.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = client.Write(accessDenied[:])
			return
		}
		ln := &oneConnListener{done: make(chan struct{})}
		// Every byte to and from the agent crosses idle, which closes the
		// tunnel after tunnelIdle without one; the upstream connections
		// end with it.
		idle := newIdleConn(&prefixConn{Conn: client, r: io.MultiReader(bytes.NewReader(raw), client)}, nil, e.p.tunnelIdle, func() {
			e.dl.log.Info().Str(FieldDaemon, spec.DaemonEgress).Str(FieldHost, a.host).Int(FieldPort, a.port).
				Str(FieldMethod, http.MethodConnect).Str("idle", e.p.tunnelIdle.String()).
				Msg("egress connection idle, closed")
		})
		tc := tls.Server(&closeHookConn{Conn: idle, onClose: ln.Close}, &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return e.p.creds.issuer.Certificate(a.host, e.p.clock())
			},
			NextProtos: []string{"h2", "http/1.1"},
			MinVersion: tls.VersionTLS12,
		})
		defer tc.Close()
		hctx, cancel := context.WithTimeout(r.Context(), e.p.sniffTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			a.refuseWith(deniedHandshake, fmt.Sprintf("the client's TLS handshake for %s failed (does it trust the bottle's CA?): %s",
				a.host, clip(err.Error(), maxReasonLen/2)))
			return
		}
		_ = client.SetReadDeadline(time.Time{})
		a.record() // the CONNECT's own line

		ups := &upstreamConns{m: map[*upstreamConn]struct{}{}}
		tr := e.credentialTransport(a, ups)
		// The server returns when the agent's connection closes, which
		// may be before an HTTP/2 handler is done with its upstream
		// connection: that one would not be idle yet, and would stay
		// open (with its goroutines) for the transport's idle timeout.
		// Every upstream connection of the tunnel ends with it.
		defer ups.closeAll()
		defer tr.CloseIdleConnections()
		h := &credentialHandler{e: e, a: a, creds: creds, names: credentialNames(creds)}
		h.rp = &httputil.ReverseProxy{
			Rewrite:   h.rewrite,
			Transport: tr,
			// A model's streamed answer reaches the agent as it comes.
			FlushInterval:  -1,
			ErrorLog:       stdlog.New(io.Discard, "", 0),
			ModifyResponse: h.responded,
			ErrorHandler:   h.failed,
		}
		ln.c = tc
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       e.p.tunnelIdle,
			MaxHeaderBytes:    maxHeaderBytes,
			HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxCredentialStreams},
			ErrorLog:          httpErrorLog(e.dl.log, spec.DaemonEgress),
			BaseContext:       func(net.Listener) context.Context { return e.base },
		}
		_ = srv.Serve(ln) // returns once the connection is closed
		_ = srv.Close()
	}
}

// credentialTransport is an intercepted tunnel's way upstream: every dial
// through the proxy's address policy, TLS verified against the bundle's
// roots for the CONNECT host, HTTP/2 when the upstream offers it.
func (e *egress) credentialTransport(a *attempt, ups *upstreamConns) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := e.d.dial(ctx, a.host, a.port)
			if err != nil {
				return nil, err
			}
			return ups.add(c)
		},
		TLSClientConfig: &tls.Config{
			RootCAs:    e.p.creds.roots,
			ServerName: a.host,
			NextProtos: []string{"h2", "http/1.1"},
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    dialTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		DisableCompression:     true,
		IdleConnTimeout:        idleTimeout,
		MaxConnsPerHost:        maxCredentialUpstreamConns,
	}
}

// upstreamConns are the upstream connections of one intercepted tunnel.
type upstreamConns struct {
	mu     sync.Mutex
	m      map[*upstreamConn]struct{}
	closed bool
}

// add tracks c, or closes it when the tunnel has ended.
func (u *upstreamConns) add(c net.Conn) (net.Conn, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		_ = c.Close()
		return nil, errors.New("the intercepted tunnel has closed")
	}
	uc := &upstreamConn{Conn: c, u: u}
	u.m[uc] = struct{}{}
	return uc, nil
}

// closeAll closes every connection, and any dialled from now on.
func (u *upstreamConns) closeAll() {
	u.mu.Lock()
	u.closed = true
	cs := make([]*upstreamConn, 0, len(u.m))
	for c := range u.m {
		cs = append(cs, c)
	}
	u.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// upstreamConn leaves its set when closed.
type upstreamConn struct {
	net.Conn
	u *upstreamConns
}

func (c *upstreamConn) Close() error {
	c.u.mu.Lock()
	delete(c.u.m, c)
	c.u.mu.Unlock()
	return c.Conn.Close()
}

// credentialHandler serves the requests of one intercepted tunnel.
type credentialHandler struct {
	e     *egress
	a     *attempt
	creds []bottle.BundleCredential
	names string // credentialNames(creds)
	rp    *httputil.ReverseProxy
}

// credentialRequest is one request on its way: its decision line is
// written once, when the answer or the failure comes.
type credentialRequest struct {
	method, path string
	once         sync.Once
}

type credentialRequestKey struct{}

func (h *credentialHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cr := &credentialRequest{method: r.Method, path: r.URL.Path}
	why, short := "", deniedHost
	switch {
	case r.Method == http.MethodConnect:
		why = fmt.Sprintf("a CONNECT inside the intercepted tunnel to %s", h.a.host)
	case strings.EqualFold(r.Method, http.MethodTrace), strings.EqualFold(r.Method, "TRACK"):
		// A server that answers TRACE (or IIS's TRACK) echoes the request
		// it got, headers and all: the credential would come back to the
		// agent. Methods are case-sensitive, but some servers are not.
		why, short = fmt.Sprintf("a %s inside the intercepted tunnel to %s would echo the credential back", logSafe(r.Method, maxMethodLen), h.a.host), deniedTrace
	default:
		// No hole of a test build opens this: it is where a credential
		// could go to another host on the same address.
		why = hostDiffers(r.Host, h.a.host, h.a.port)
	}
	if why != "" {
		v, _, _, _ := h.a.outcome()
		v.method = r.Method
		v.deny(http.StatusForbidden, short, why+"; no credential was added")
		h.log(cr, v, "")
		writeResponse(w, h.e.denial(r, &v))
		return
	}
	h.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), credentialRequestKey{}, cr)))
}

// rewrite sends the request to the CONNECT host and port with the
// credentials' headers in place of the agent's. ReverseProxy has removed
// the hop-by-hop headers (those the agent's Connection names included)
// before it runs, so nothing can remove what it sets.
func (h *credentialHandler) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "https"
	pr.Out.URL.Host = net.JoinHostPort(h.a.host, strconv.Itoa(h.a.port))
	pr.Out.URL.User = nil
	// The upstream gets the credentialed host's own name, not the form the
	// agent wrote (API.TEST., [api.test], api.test:): hostDiffers takes
	// them all as the CONNECT host, but a front that routes on the Host's
	// text (a CDN's table of tenants) might not, and would hand the
	// credential to whoever it finds.
	pr.Out.Host = h.a.host
	if _, p, err := net.SplitHostPort(pr.In.Host); err == nil && p != "" {
		pr.Out.Host = pr.Out.URL.Host // hostDiffers checked it is a.port
	}
	for _, c := range h.creds {
		for k := range pr.Out.Header {
			if strings.EqualFold(k, c.Header) {
				delete(pr.Out.Header, k)
			}
		}
		for k := range pr.Out.Trailer {
			if strings.EqualFold(k, c.Header) {
				delete(pr.Out.Trailer, k)
			}
		}
	}
	for _, c := range h.creds {
		pr.Out.Header.Set(c.Header, c.Prefix+c.Value)
	}
}

// responded logs the request the upstream answered.
func (h *credentialHandler) responded(resp *http.Response) error {
	if cr, ok := resp.Request.Context().Value(credentialRequestKey{}).(*credentialRequest); ok {
		v, _, _, _ := h.a.outcome()
		v.method = cr.method
		h.log(cr, v, h.names)
	}
	return nil
}

// failed answers a request that did not reach the upstream, or whose
// answer did not come: 403 when the address policy refused the dial,
// else 502.
func (h *credentialHandler) failed(w http.ResponseWriter, r *http.Request, err error) {
	cr, _ := r.Context().Value(credentialRequestKey{}).(*credentialRequest)
	if cr == nil {
		cr = &credentialRequest{method: r.Method, path: r.URL.Path}
	}
	v, _, _, _ := h.a.outcome()
	v.method = cr.method
	if b, ok := errors.AsType[*blockedError](err); ok {
		v.denyBlocked(b)
		h.log(cr, v, "")
		writeResponse(w, h.e.denial(r, &v))
		return
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text holds the URL, which may hold secrets
	}
	err = h.redact(err)
	h.log(cr, v, h.names)
	h.e.dl.log.Warn().Str(FieldDaemon, spec.DaemonEgress).Str(FieldHost, h.a.host).Int(FieldPort, h.a.port).
		Str(FieldMethod, logSafe(cr.method, maxMethodLen)).Str(FieldPath, logSafe(cr.path, maxPathLen)).
		Str("error", clip(err.Error(), maxReasonLen)).Msg("egress upstream failed")
	writeResponse(w, h.e.badGateway(r, &v, err))
}

// redact replaces err by one that says what it was about but holds no
// credential, if its text holds a value: an error of the transport may
// quote the headers it was given (Go's HTTP/2 transport does for
// Connection and Upgrade, which loadCredentials refuses), and its text
// goes to the agent in a 502 and to the log.
func (h *credentialHandler) redact(err error) error {
	msg := err.Error()
	for _, c := range h.creds {
		if strings.Contains(msg, c.Value) {
			return fmt.Errorf("the request with the credential %s failed upstream (the error quoted the value and is left out)", h.names)
		}
	}
	return err
}

// log writes cr's decision line once: allowed with the credential names
// added, or v's refusal.
func (h *credentialHandler) log(cr *credentialRequest, v verdict, credential string) {
	cr.once.Do(func() {
		h.e.dl.request(v.method, v.host, v.port, v.rule, v.reason, credential, cr.path)
	})
}

// writeResponse writes a response the proxy made itself.
func writeResponse(w http.ResponseWriter, resp *http.Response) {
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// refuseWith logs the refusal of a tunnel before it opened, as short.
func (a *attempt) refuseWith(short, why string) {
	a.mu.Lock()
	a.v.deny(http.StatusForbidden, short, why)
	a.mu.Unlock()
	a.record()
}

// clock is the policy's clock.
func (p *policy) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// prefixConn reads r (the bytes already read, then the connection).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// closeHookConn calls onClose when it is closed.
type closeHookConn struct {
	net.Conn
	onClose func() error
}

func (c *closeHookConn) Close() error {
	err := c.Conn.Close()
	_ = c.onClose()
	return err
}

// oneConnListener hands out c once, then blocks until closed: an
// http.Server serving one connection returns when it ends.
type oneConnListener struct {
	c     net.Conn
	taken bool
	mu    sync.Mutex
	done  chan struct{}
	once  sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.taken {
		l.taken = true
		l.mu.Unlock()
		return l.c, nil
	}
	l.mu.Unlock()
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }

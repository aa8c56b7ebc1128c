package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// authority is a CA for tests, made anew for each: ECDSA P-256, which
// takes no time to make.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

// newAuthority makes a CA whose name constraints permit the permitted
// names (and the names under them); none permits every name.
func newAuthority(t *testing.T, permitted ...string) *authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test bottle CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		PermittedDNSDomainsCritical: len(permitted) > 0, PermittedDNSDomains: permitted,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue makes a server certificate for name, valid until notAfter.
func (a *authority) issue(name string, notAfter time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: notAfter.Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// server is a TLS config that answers every ClientHello with a
// certificate of a for name (the SNI when name is ""), as the bundle
// answers a host it intercepts.
func (a *authority) server(name string, notAfter time.Time) *tls.Config {
	return &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if name != "" {
			return a.issue(name, notAfter)
		}
		return a.issue(h.ServerName, notAfter)
	}}
}

// tlsUpstream starts a loopback TLS server with a certificate of its own
// (httptest's, for example.com): a credentialed host's real upstream, or
// any other host's.
func tlsUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	// The probe refuses its certificate, which the server would log.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestProxyIntercept tells a handshake that the bundle answered with a
// certificate of the bottle's CA from every other answer, and wants
// nothing sent after the handshake.
func TestProxyIntercept(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "cred.test")
	later := time.Now().Add(time.Hour)
	p := fakeProxy{
		intercept: map[string]*tls.Config{
			"cred.test:443":       ca.server("", later),
			"cred.test:8443":      ca.server("", later),
			"sub.cred.test:443":   ca.server("", later),
			"wrong-name.test:443": ca.server("cred.test", later),
			"expired.test:443":    ca.server("", time.Now().Add(-time.Hour)),
			"outside.test:443":    ca.server("", later),
			"other-ca.test:443":   newAuthority(t).server("", later),
		},
		sniffing: map[string]bool{"refused.test:443": true},
		tunnels: map[string]string{
			"upstream.test:443": tlsUpstream(t),
			"close.test:443":    answering(t, nil),
			"alert.test:443":    answering(t, []byte{21, 3, 3, 0, 2, 2, 40}),
			"junk.test:443":     answering(t, []byte("SSH-2.0-x\r\n")),
			"silent.test:443":   silent(t),
		},
		header: true,
	}
	proxy := proxyServer(t, p)
	// The proxy that is down refuses at once, without a port that another
	// test's listener could take.
	const down = "192.0.2.1:8888"
	refuse := func(_ context.Context, network, _ string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errConnRefused}
	}
	tests := []struct {
		name, addr, target string
		got                string
		detail             string
	}{
		{"the bundle's certificate", proxy, "cred.test:443", "intercepted", "a certificate for cred.test of the bottle's CA"},
		{"on a /tls port", proxy, "cred.test:8443", "intercepted", "of the bottle's CA"},
		{"a name under a credentialed one, which the constraints permit", proxy, "sub.cred.test:443", "intercepted", "of the bottle's CA"},
		{"an upstream's certificate", proxy, "upstream.test:443", "not-intercepted", "not the bottle's CA's"},
		{"another CA's certificate", proxy, "other-ca.test:443", "not-intercepted", "not the bottle's CA's"},
		{"the CA's, for another name", proxy, "wrong-name.test:443", "intercepted-invalid", "the agent would refuse for wrong-name.test"},
		{"the CA's, expired", proxy, "expired.test:443", "intercepted-invalid", "expired"},
		{"the CA's, outside its name constraints", proxy, "outside.test:443", "intercepted-invalid", "the agent would refuse"},
		{"the proxy's refusal of the ClientHello", proxy, "refused.test:443", "not-intercepted", "alert access_denied"},
		{"an alert", proxy, "alert.test:443", "not-intercepted", "a TLS alert (15030300020228) before any certificate"},
		{"closed", proxy, "close.test:443", "not-intercepted", "closed before any certificate"},
		{"not TLS", proxy, "junk.test:443", "not-intercepted", "bytes that are not TLS"},
		{"no answer", proxy, "silent.test:443", "timeout", "no certificate within"},
		{"a denied CONNECT", proxy, "denied.test:443", "no-tunnel", "403 Forbidden: no rule allows denied.test:443"},
		{"the proxy could not dial", proxy, "bad-gateway.test:443", "no-tunnel", "502 Bad Gateway"},
		{"the proxy is down", down, "cred.test:443", "no-tunnel", "the proxy " + down + ": connection refused"},
	}
	for _, tt := range tests {
		for _, expect := range []Expect{ExpectIntercepted, ExpectNotIntercepted} {
			t.Run(tt.name+" "+string(expect), func(t *testing.T) {
				t.Parallel()
				c := Check{Name: tt.name, Kind: KindProxyIntercept, Addr: tt.addr, Target: tt.target, CA: ca.pem, Expect: expect}
				opt := Options{ProxyTimeout: 400 * time.Millisecond, InterceptTimeout: 300 * time.Millisecond}
				if tt.addr == down {
					opt.dial = refuse
				}
				r := Run(t.Context(), []Check{c}, opt)[0]
				wantOK := expect.Accepts(tt.got)
				if r.Got != tt.got || r.OK != wantOK || !strings.Contains(r.Detail, tt.detail) {
					t.Fatalf("result = %+v, want got %s, ok %v, detail with %q", r, tt.got, wantOK, tt.detail)
				}
			})
		}
	}
}

// TestProxyInterceptSendsNothing wants the connection closed once the
// handshake is done, with no byte after it: the self-test never sends a
// request through an interception, which would carry the credential.
func TestProxyInterceptSendsNothing(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "cred.test")
	sent := make(chan int64, 1)
	proxy := proxyServer(t, fakeProxy{
		intercept: map[string]*tls.Config{"cred.test:443": ca.server("", time.Now().Add(time.Hour))},
		appData:   sent,
	})
	c := Check{Name: "n", Kind: KindProxyIntercept, Addr: proxy, Target: "cred.test:443", CA: ca.pem, Expect: ExpectIntercepted}
	if r := Run(t.Context(), []Check{c}, Options{})[0]; !r.OK {
		t.Fatalf("result = %+v, want intercepted", r)
	}
	select {
	case n := <-sent:
		if n != 0 {
			t.Fatalf("the probe sent %d bytes after the handshake; it must send nothing", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the probe left the connection open after the handshake")
	}
}

// TestProxyInterceptBounds wants a check that expects no interception
// over as soon as InterceptTimeout has passed, however long ProxyTimeout
// is, and one that expects interception to wait ProxyTimeout: the bundle
// may be slow to issue its first certificate.
func TestProxyInterceptBounds(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "cred.test")
	proxy := proxyServer(t, fakeProxy{tunnels: map[string]string{"silent.test:443": silent(t)}})
	opt := Options{ProxyTimeout: 2 * time.Second, InterceptTimeout: 100 * time.Millisecond}
	tests := []struct {
		expect   Expect
		ok       bool
		min, max time.Duration
	}{
		{ExpectNotIntercepted, true, 90 * time.Millisecond, time.Second},
		{ExpectIntercepted, false, 1900 * time.Millisecond, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(string(tt.expect), func(t *testing.T) {
			t.Parallel()
			c := Check{Name: "n", Kind: KindProxyIntercept, Addr: proxy, Target: "silent.test:443", CA: ca.pem, Expect: tt.expect}
			start := time.Now()
			r := Run(t.Context(), []Check{c}, opt)[0]
			took := time.Since(start)
			if r.Got != gotTimeout || r.OK != tt.ok || took < tt.min || took > tt.max {
				t.Fatalf("result = %+v after %s, want timeout, ok %v, after %s to %s", r, took, tt.ok, tt.min, tt.max)
			}
			if r.Unproven() != tt.ok {
				t.Fatalf("Unproven() = %v, want %v: a pass without a certificate proves nothing", r.Unproven(), tt.ok)
			}
		})
	}
}

// TestStandardInterception runs the interception checks Standard makes
// against bundles in miniature: only the one that intercepts the
// credentialed host, and nothing else, passes; each other fails with the
// hole it has.
func TestStandardInterception(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "cred.test")
	unconstrained := newAuthority(t)
	later := time.Now().Add(time.Hour)
	upstream := tlsUpstream(t)
	const wildcard = "verify-n1.cred.test:443"
	every := func(a *authority) map[string]*tls.Config {
		return map[string]*tls.Config{"cred.test:443": a.server("", later), "other.test:443": a.server("", later),
			"more.test:443": a.server("", later), wildcard: a.server("", later)}
	}
	tests := []struct {
		name  string
		ca    *authority // the bottle's; nil is ca
		proxy fakeProxy
		holes []string // a part of each failed check's hole, in order
	}{
		{"the credentialed host alone", nil, fakeProxy{
			intercept: map[string]*tls.Config{"cred.test:443": ca.server("", later)},
			tunnels:   map[string]string{"other.test:443": upstream, "more.test:443": upstream},
		}, nil},
		{"no interception: an older bundle", nil, fakeProxy{
			tunnels: map[string]string{"cred.test:443": upstream, "other.test:443": upstream, "more.test:443": upstream},
		}, []string{"the bundle does not add the credential for cred.test"}},
		{"the credentialed host, denied", nil, fakeProxy{
			tunnels: map[string]string{"other.test:443": upstream, "more.test:443": upstream},
		}, []string{"the bundle does not add the credential for cred.test"}},
		{"with a CA that is not the bottle's", nil, fakeProxy{
			intercept: map[string]*tls.Config{"cred.test:443": unconstrained.server("", later)},
			tunnels:   map[string]string{"other.test:443": upstream, "more.test:443": upstream},
		}, []string{"the bundle does not add the credential for cred.test"}},
		{"every host, with the bottle's CA", nil, fakeProxy{intercept: every(ca)},
			[]string{"the bundle intercepts other.test", "the bundle intercepts more.test", "the bundle intercepts verify-n1.cred.test"}},
		{"every host, with a bottle's CA without constraints", unconstrained, fakeProxy{intercept: every(unconstrained)},
			[]string{"the bundle intercepts other.test", "the bundle intercepts more.test", "the bundle intercepts verify-n1.cred.test"}},
		{"names under the credentialed host", nil, fakeProxy{
			intercept: map[string]*tls.Config{"cred.test:443": ca.server("", later), wildcard: ca.server("", later)},
			tunnels:   map[string]string{"other.test:443": upstream, "more.test:443": upstream},
		}, []string{"the bundle intercepts verify-n1.cred.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			host, port, err := net.SplitHostPort(proxyServer(t, tt.proxy))
			if err != nil {
				t.Fatal(err)
			}
			p, _ := strconv.Atoi(port)
			bottleCA := ca
			if tt.ca != nil {
				bottleCA = tt.ca
			}
			all, err := Standard(Target{
				BundleIP: host, ProxyPort: p, Daemons: []string{"egress"},
				Allow:        []string{"cred.test", "other.test", "more.test", "third.test", "*.cred.test"},
				Credentialed: []string{"cred.test"}, CA: []byte(bottleCA.pem), Nonce: "n1",
			})
			if err != nil {
				t.Fatal(err)
			}
			var checks []Check
			for _, c := range all {
				if c.Kind == KindProxyIntercept {
					checks = append(checks, c)
				}
			}
			if len(checks) != 4 {
				t.Fatalf("Standard made %d interception checks, want 4 (cred.test; other.test, more.test; the wildcard's): %+v", len(checks), checks)
			}
			var holes []string
			for _, r := range Run(t.Context(), checks, Options{InterceptTimeout: 300 * time.Millisecond, ProxyTimeout: time.Second}) {
				if !r.OK {
					holes = append(holes, r.Hole+" ("+r.Got+": "+r.Detail+")")
				}
			}
			if len(holes) != len(tt.holes) {
				t.Fatalf("holes = %q, want %d: %q", holes, len(tt.holes), tt.holes)
			}
			for i, want := range tt.holes {
				if !strings.Contains(holes[i], want) {
					t.Errorf("hole %d = %q, want one with %q", i, holes[i], want)
				}
			}
		})
	}
}

func TestParseCA(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t).pem
	tests := []struct {
		name, in string
		n        int
		err      string
	}{
		{"one", ca, 1, ""},
		{"two", ca + ca, 2, ""},
		{"empty", "", 0, "not a PEM CA certificate"},
		{"a key", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", 0, "a PEM EC PRIVATE KEY block"},
		{"text after it", ca + "junk", 0, "not a PEM CA certificate"},
		{"not DER", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0, "parse the CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseCA(tt.in)
			if tt.err == "" && (err != nil || len(got) != tt.n) || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("parseCA() = %d certificates, %v; want %d, error with %q", len(got), err, tt.n, tt.err)
			}
		})
	}
}

package probe

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bundle"
)

// fakeProxy is an egress proxy in miniature. It tunnels a CONNECT to a
// target in tunnels to that target's local upstream, answers an
// absolute-form GET itself for a host in plain, and denies the rest the
// way the bundle's proxy does. It never dials anything but loopback
// upstreams.
type fakeProxy struct {
	tunnels map[string]string // CONNECT target -> upstream address
	plain   map[string]int    // GET host -> status
	header  bool              // send bundle.DeniedHeader with a 403
	// late tunnels a CONNECT target after the 200, as the bundle does
	// for a checked tunnel: a dial that fails then only closes it.
	late map[string]string
	// sniffing targets get the 200, then the bundle's alert
	// access_denied once the client has sent something, and no dial.
	sniffing map[string]bool
	// intercept targets get the 200, then a TLS server of the proxy's
	// own with this config, as the bundle answers a credentialed host;
	// how many bytes the client sent after the handshake, until it
	// closed, goes to appData.
	intercept map[string]*tls.Config
	appData   chan<- int64
}

func (p fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	deny := func(host string) {
		if p.header {
			w.Header().Set(bundle.DeniedHeader, "no rule allows "+host)
		}
		http.Error(w, "bottle-apply egress: "+host+" is not allowed\nsecond line", http.StatusForbidden)
	}
	if r.Method == http.MethodConnect {
		switch r.URL.Host {
		case "bad-gateway.test:443":
			http.Error(w, "upstream is down", http.StatusBadGateway)
			return
		case "bad-target.test:443":
			w.Header().Set(bundle.DeniedHeader, "bad-target")
			http.Error(w, "bad target", http.StatusBadRequest)
			return
		}
		if cfg := p.intercept[r.URL.Host]; cfg != nil {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			tc := tls.Server(conn, cfg)
			if tc.Handshake() != nil {
				return
			}
			n, _ := io.Copy(io.Discard, tc)
			if p.appData != nil {
				p.appData <- n
			}
			return
		}
		if p.sniffing[r.URL.Host] {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(time.Second))
			brw.Reader.ReadByte()
			conn.Write(accessDenied)
			return
		}
		up, ok := p.tunnels[r.URL.Host]
		late := false
		if !ok {
			up, late = p.late[r.URL.Host]
		}
		if up == "" {
			deny(r.URL.Host)
			return
		}
		var upc net.Conn
		var err error
		if !late {
			if upc, err = net.Dial("tcp", up); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer upc.Close()
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		if late {
			if upc, err = net.Dial("tcp", up); err != nil {
				return
			}
			defer upc.Close()
		}
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(upc, conn) })
		io.Copy(conn, upc)
		conn.Close()
		wg.Wait()
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	status, ok := p.plain[r.URL.Host]
	if !ok {
		deny(r.URL.Host)
		return
	}
	w.WriteHeader(status)
	fmt.Fprintln(w, "proxied")
}

// upstream starts a local HTTP server that answers every request with
// status.
func upstream(t *testing.T, status int) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" || r.URL.Path != "/" {
			http.Error(w, "want GET / with a Host", http.StatusBadRequest)
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// proxyServer starts p on loopback and returns its address.
func proxyServer(t *testing.T, p fakeProxy) string {
	t.Helper()
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// silent starts a listener that accepts and never answers.
func silent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// answering starts a listener that writes out to every connection, then
// closes it.
func answering(t *testing.T, out []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write(out)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestProxyTLS tells the bundle's refusal of a ClientHello from every way
// a proxy that dialled shows it: only the proxy's own alert, or no tunnel
// at all, passes.
func TestProxyTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	p := fakeProxy{
		sniffing: map[string]bool{"allowed.test:443": true},
		tunnels: map[string]string{
			"front.test:443":   srv.Listener.Addr().String(),
			"alert.test:443":   answering(t, []byte{21, 3, 3, 0, 2, 2, 40}),
			"denied2.test:443": answering(t, append(bytes.Clone(accessDenied), 22, 3, 3)),
			"close.test:443":   answering(t, nil),
			"junk.test:443":    answering(t, []byte("SSH-2.0-x\r\n")),
			"silent.test:443":  silent(t),
		},
		late:   map[string]string{"down.test:443": closedPort(t, "tcp")},
		header: true,
	}
	proxy := proxyServer(t, p)
	tests := []struct {
		name, target string
		got          string
		ok           bool
		detail       string
	}{
		{"refused with the proxy's alert", "allowed.test:443", "denied", true, "alert access_denied"},
		{"no tunnel: denied", "denied.test:443", "no-tunnel", true, "403 Forbidden: no rule allows denied.test:443"},
		{"no tunnel: the proxy could not dial", "bad-gateway.test:443", "no-tunnel", true, "502 Bad Gateway"},
		{"a server answers: fronted", "front.test:443", "handshake", false, "a server answered the ClientHello"},
		{"another alert: an upstream's", "alert.test:443", "alert", false, "not the proxy's (15030300020228)"},
		{"the alert, then more", "denied2.test:443", "alert", false, "not the proxy's"},
		{"closed without an alert: dialled", "close.test:443", "closed", false, "without the proxy's alert"},
		{"dialled after the 200 and failed", "down.test:443", "closed", false, "without the proxy's alert"},
		{"not TLS", "junk.test:443", "error", false, "not TLS"},
		{"no answer", "silent.test:443", "timeout", false, "no answer to the ClientHello within 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Check{Name: tt.name, Kind: KindProxyTLS, Addr: proxy, Target: tt.target, SNI: "bottle-apply-verify.invalid", Expect: ExpectDenied}
			r := Run(t.Context(), []Check{c}, Options{ProxyTimeout: 300 * time.Millisecond})[0]
			if r.Got != tt.got || r.OK != tt.ok || !strings.Contains(r.Detail, tt.detail) {
				t.Fatalf("result = %+v, want got %s, ok %v, detail with %q", r, tt.got, tt.ok, tt.detail)
			}
		})
	}
}

func TestProxy(t *testing.T) {
	t.Parallel()
	ok, notFound := upstream(t, http.StatusOK), upstream(t, http.StatusNotFound)
	p := fakeProxy{
		tunnels: map[string]string{"allowed.test:443": ok, "missing.test:443": notFound, "allowed.test:8080": ok},
		plain:   map[string]int{"allowed.test": http.StatusOK, "teapot.test": http.StatusTeapot},
		header:  true,
	}
	proxy := proxyServer(t, p)
	p.header = false
	bare := proxyServer(t, p)
	hang, closed := silent(t), closedPort(t, "tcp")

	tests := []struct {
		name   string
		kind   Kind
		addr   string
		target string
		expect Expect
		got    string
		ok     bool
		detail string
	}{
		{"connect allowed", KindProxyConnect, proxy, "allowed.test:443", ExpectAllowed, "allowed", true, "GET / answered 200"},
		{"connect allowed other port", KindProxyConnect, proxy, "allowed.test:8080", ExpectAllowed, "allowed", true, "200"},
		{"connect allowed is a hole", KindProxyConnect, proxy, "allowed.test:443", ExpectDenied, "allowed", false, ""},
		{"connect denied", KindProxyConnect, proxy, "bottle-apply-verify.invalid:443", ExpectDenied, "denied", true,
			"403 Forbidden: no rule allows bottle-apply-verify.invalid:443"},
		{"connect denied without header", KindProxyConnect, bare, "denied.test:443", ExpectDenied, "denied", true,
			"403 Forbidden: bottle-apply egress: denied.test:443 is not allowed"},
		{"connect denied is not allowed", KindProxyConnect, proxy, "denied.test:443", ExpectAllowed, "denied", false, ""},
		{"connect 400 with the header", KindProxyConnect, bare, "bad-target.test:443", ExpectDenied, "denied", true,
			"400 Bad Request: bad-target"},
		{"connect bad gateway", KindProxyConnect, proxy, "bad-gateway.test:443", ExpectDenied, "error", false, "502 Bad Gateway: upstream is down"},
		{"connect tunnel 404", KindProxyConnect, proxy, "missing.test:443", ExpectAllowed, "error", false, "GET / answered 404"},
		{"connect tunnel 404 is not denied", KindProxyConnect, proxy, "missing.test:443", ExpectDenied, "error", false, ""},
		{"connect proxy down", KindProxyConnect, closed, "allowed.test:443", ExpectDenied, "unreachable", false, "refused"},
		{"connect proxy silent", KindProxyConnect, hang, "allowed.test:443", ExpectDenied, "error", false, "no answer within 300ms"},
		{"http allowed", KindProxyHTTP, proxy, "http://allowed.test/", ExpectAllowed, "allowed", true, "200 OK"},
		{"http allowed is a hole", KindProxyHTTP, proxy, "http://allowed.test/x?y=1", ExpectDenied, "allowed", false, ""},
		{"http denied", KindProxyHTTP, proxy, "http://bottle-apply-verify.invalid/", ExpectDenied, "denied", true,
			"no rule allows bottle-apply-verify.invalid"},
		{"http denied without header", KindProxyHTTP, bare, "http://denied.test/", ExpectDenied, "denied", true, "is not allowed"},
		{"http other status", KindProxyHTTP, proxy, "http://teapot.test/", ExpectDenied, "error", false, "418"},
		{"http proxy down", KindProxyHTTP, closed, "http://allowed.test/", ExpectAllowed, "unreachable", false, "the proxy " + closed},
		{"http proxy silent", KindProxyHTTP, hang, "http://allowed.test/", ExpectDenied, "error", false, "no answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Check{Name: tt.name, Kind: tt.kind, Addr: tt.addr, Target: tt.target, Expect: tt.expect}
			r := Run(t.Context(), []Check{c}, Options{ProxyTimeout: 300 * time.Millisecond})[0]
			if r.Got != tt.got || r.OK != tt.ok || !strings.Contains(r.Detail, tt.detail) {
				t.Fatalf("result = %+v, want got %s, ok %v, detail with %q", r, tt.got, tt.ok, tt.detail)
			}
		})
	}
}

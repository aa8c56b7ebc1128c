package bundle

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
)

// Attacks on the credentials of an intercepted tunnel, run as the agent
// would: raw bytes inside the TLS the bundle terminates. Each case is one
// attack that must be stopped: the credential goes to the credentialed
// host alone, under its own name, and never comes back to the agent.

// rawRequest opens an intercepted HTTP/1.1 tunnel to api.test, writes
// raw, and reads as many responses as want (nil ones when the tunnel
// closed first).
func (b *credBundle) rawRequest(t *testing.T, raw string, want int) []*http.Response {
	t.Helper()
	tc, err := b.tunnel(t, "api.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := io.WriteString(tc, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	var out []*http.Response
	for range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			out = append(out, nil)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
	return out
}

// The attack: a Host the check takes as the credentialed host's, but in
// another form (case, trailing dot, brackets, an empty port). An upstream
// front that routes on the Host's exact text (a CDN's tenant table) could
// take such a form as another tenant's and hand it the credential: the
// upstream must see the credentialed host's own name, or nothing.
func TestCredentialAttackHostForms(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	port := strconv.Itoa(b.up.port)
	canonical := []string{"api.test", "api.test:" + port}
	tests := []struct {
		name, host string
		refused    bool // else it reaches the upstream, under a canonical name
	}{
		{"upper case", "API.TEST", false},
		{"trailing dot", "api.test.", false},
		{"trailing dot and port", "Api.Test.:" + port, false},
		{"brackets", "[api.test]", false},
		{"brackets and port", "[api.test]:" + port, false},
		{"empty port", "api.test:", false},
		{"userinfo", "evil.test@api.test", true},
		{"userinfo after", "api.test@evil.test", true},
		{"other port", "api.test:1", true},
		{"port with a zero", "api.test:0" + port, true},
		{"percent-encoded dot", "api%2etest", true},
		{"suffix", "api.test.evil.test", true},
		{"prefix", "evil-api.test", true},
		{"IP literal", "127.0.0.1:" + port, true},
		{"bracketed IPv6", "[::1]:" + port, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(b.up.requests())
			resp := b.rawRequest(t, "GET /form HTTP/1.1\r\nHost: "+tt.host+"\r\n\r\n", 1)[0]
			reqs := b.up.requests()[before:]
			if tt.refused {
				if resp == nil || resp.StatusCode/100 != 4 || len(reqs) != 0 {
					t.Fatalf("Host %q: %v, the upstream got %d requests; want a refusal and none", tt.host, status(resp), len(reqs))
				}
				return
			}
			if resp == nil || resp.StatusCode != http.StatusOK || len(reqs) != 1 {
				t.Fatalf("Host %q: %v, the upstream got %d requests; want 200 and one", tt.host, status(resp), len(reqs))
			}
			if !slices.Contains(canonical, reqs[0].host) {
				t.Errorf("Host %q reached the upstream as %q; want one of %q", tt.host, reqs[0].host, canonical)
			}
		})
	}
	// The same forms as HTTP/2 :authority.
	for _, host := range []string{"API.TEST", "api.test.", "[api.test]:" + port} {
		t.Run("HTTP/2 "+host, func(t *testing.T) {
			before := len(b.up.requests())
			req, _ := http.NewRequest(http.MethodGet, b.url("api.test", "/form"), nil)
			req.Host = host
			resp, err := b.agent(t, true).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			reqs := b.up.requests()[before:]
			if resp.StatusCode != http.StatusOK || len(reqs) != 1 || !slices.Contains(canonical, reqs[0].host) {
				t.Fatalf(":authority %q: %s, upstream saw %+v; want 200 and one of %q", host, resp.Status, reqs, canonical)
			}
		})
	}
}

// status names a response for a failure message.
func status(resp *http.Response) string {
	if resp == nil {
		return "no response (the tunnel closed)"
	}
	return fmt.Sprintf("%s (%s)", resp.Status, resp.Header.Get(DeniedHeader))
}

// The attack: read the credential back from the upstream, or through the
// proxy's own answers. TRACE makes a server echo the request it received,
// headers and all: the credential would come back to the agent. Requests
// the check refuses, and those the Go server refuses, must not reach the
// upstream.
func TestCredentialAttackReadBack(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	port := strconv.Itoa(b.up.port)
	tests := []struct {
		name, raw, short string // short: the DeniedHeader, when the proxy refuses
	}{
		{"TRACE", "TRACE / HTTP/1.1\r\nHost: api.test\r\n\r\n", deniedTrace},
		{"TRACE lower case", "trace / HTTP/1.1\r\nHost: api.test\r\n\r\n", deniedTrace},
		{"TRACK", "TRACK / HTTP/1.1\r\nHost: api.test\r\n\r\n", deniedTrace},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: api.test\r\nHost: evil.test\r\n\r\n", ""}, // Go's server answers 400
		{"Host with a space", "GET / HTTP/1.1\r\nHost: api.test evil.test\r\n\r\n", ""},
		{"absolute form with userinfo", "GET https://api.test@evil.test:" + port + "/ HTTP/1.1\r\nHost: api.test\r\n\r\n", deniedHost},
		{"absolute form, other scheme", "GET ftp://evil.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n", deniedHost},
		{"CONNECT to itself", "CONNECT api.test:" + port + " HTTP/1.1\r\nHost: api.test:" + port + "\r\n\r\n", deniedHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(b.up.requests())
			resp := b.rawRequest(t, tt.raw, 1)[0]
			if resp == nil || resp.StatusCode/100 != 4 || resp.Header.Get(DeniedHeader) != tt.short {
				t.Errorf("%q = %s; want a refusal (%s)", tt.raw, status(resp), tt.short)
			}
			if resp != nil {
				body, _ := io.ReadAll(resp.Body)
				if strings.Contains(string(body), "VALUE-never-logged") {
					t.Errorf("the answer holds a credential: %q", body)
				}
			}
			if reqs := b.up.requests()[before:]; len(reqs) != 0 {
				t.Errorf("%q reached the upstream: %+v", tt.raw, reqs)
			}
		})
	}
}

// The attack: requests that ride behind a refused one, or inside the body
// of an allowed one (pipelining, keep-alive after a refusal, CL/TE
// smuggling). Each request the upstream gets is one the agent sent to
// api.test, whole; the one smuggled in a body stays body.
func TestCredentialAttackPipelining(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n"
	tests := []struct {
		name      string
		raw       string
		want      int   // responses
		statuses  []int // 0: the tunnel closed
		upstreams []string
	}{
		{"refused, then allowed on the same connection",
			"GET /a HTTP/1.1\r\nHost: evil.test\r\n\r\nGET /b HTTP/1.1\r\nHost: api.test\r\n\r\n",
			2, []int{403, 200}, []string{"/b"}},
		{"allowed, then refused",
			"GET /a HTTP/1.1\r\nHost: api.test\r\n\r\nGET /b HTTP/1.1\r\nHost: evil.test\r\n\r\n",
			2, []int{200, 403}, []string{"/a"}},
		{"a request in the body",
			fmt.Sprintf("POST /a HTTP/1.1\r\nHost: api.test\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled),
			1, []int{200}, []string{"/a"}},
		// Go's server reads it as chunked (RFC 9112 6.3): the request
		// after the chunked body is a request of its own, and checked.
		{"Content-Length and chunked",
			fmt.Sprintf("POST /a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s", smuggled),
			2, []int{200, 403}, []string{"/a"}},
		{"two Content-Lengths",
			fmt.Sprintf("POST /a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled),
			1, []int{400}, nil},
		{"chunked, obfuscated",
			"POST /a HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
			1, []int{501}, nil},
		// The HTTP/2 upstream cannot carry an Upgrade: 502, nothing sent.
		{"h2c upgrade",
			"GET /h2c HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /after HTTP/1.1\r\nHost: evil.test\r\n\r\n",
			2, []int{502, 403}, nil},
		{"a header past maxHeaderBytes",
			"GET /big HTTP/1.1\r\nHost: api.test\r\nX-Big: " + strings.Repeat("b", maxHeaderBytes+4096) + "\r\n\r\n",
			1, []int{431}, nil},
		{"Expect 100-continue for another host",
			"POST /a HTTP/1.1\r\nHost: evil.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
			1, []int{403}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(b.up.requests())
			resps := b.rawRequest(t, tt.raw, tt.want)
			for i, resp := range resps {
				got := 0
				if resp != nil {
					got = resp.StatusCode
				}
				if got != tt.statuses[i] {
					t.Errorf("response %d = %s; want %d", i, status(resp), tt.statuses[i])
				}
			}
			var paths []string
			for _, r := range b.up.requests()[before:] {
				paths = append(paths, r.path)
				if r.host != "api.test" {
					t.Errorf("the upstream got a request for %q", r.host)
				}
			}
			if !slices.Equal(paths, tt.upstreams) {
				t.Errorf("the upstream got %q; want %q", paths, tt.upstreams)
			}
		})
	}
}

// The attack: a WebSocket upgrade, then an HTTP request for another host
// on the switched stream. After the switch the stream is the upstream's
// (api.test's) alone: the bytes go there as they are, with no credential
// added, and nothing is dialled elsewhere.
func TestCredentialAttackAfterUpgrade(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	tc, err := b.tunnel(t, "api.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade = %v, %v", resp, err)
	}
	next := "GET /next HTTP/1.1\r\nHost: evil.test\r\nX-Api-Key: agent-own\r\n\r\n"
	if _, err := io.WriteString(tc, next); err != nil {
		t.Fatal(err)
	}
	// The echoing upstream returns exactly what the agent wrote.
	got := make([]byte, len(next))
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != next {
		t.Fatalf("the switched stream carried %q, %v; want the agent's bytes unchanged", got, err)
	}
	if b.res.wasAsked("evil.test") {
		t.Fatal("the proxy resolved evil.test")
	}
	if reqs := b.up.requests(); len(reqs) != 1 {
		t.Fatalf("upstream requests = %+v; want the upgrade alone", reqs)
	}
}

// The attack (a spec author's mistake, or a credentials file not written
// by a checked spec): a credential for a header of the connection. The
// HTTP/2 transport refuses such a request with an error that quotes the
// value ("invalid Connection request header: [...]"), which a 502 would
// hand to the agent and the log would keep. The bundle refuses the file,
// as spec validation refuses the spec.
func TestCredentialAttackConnectionHeader(t *testing.T) {
	t.Parallel()
	bottleCA, err := ca.New("hello", []string{"api.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, header := range []string{"Connection", "upgrade", "Transfer-Encoding", "TE", "Host", "Content-Length", "Trailer", "Keep-Alive", "Proxy-Authorization"} {
		t.Run(header, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(newResolver(map[string]string{"api.test": "127.0.0.1"}), "api.test:*")
			cfg.CredentialsFile = credFile(t, bottleCA, nil, bottle.BundleCredential{Host: "api.test", Header: header, Value: secretKey})
			cfg.upstreamRoots = x509.NewCertPool
			log := &logBuffer{}
			// A bundle that takes the file runs until the context ends.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			err := Run(ctx, cfg, log)
			if err == nil || !strings.Contains(err.Error(), "header") {
				t.Fatalf("Run = %v; want the credentials file refused for its header", err)
			}
			if strings.Contains(err.Error(), secretKey) || strings.Contains(log.String(), secretKey) {
				t.Fatalf("the error or the log holds the value")
			}
		})
	}
}

// The attack: many HTTP/2 streams in one intercepted tunnel. Each stream
// is a handler holding a request (its header up to maxHeaderBytes) and an
// upstream request, so the streams a tunnel may open at once multiply
// what the proxy's cap on connections bounds. The proxy's SETTINGS must
// cap them at maxCredentialStreams, however many Go's default allows.
func TestCredentialAttackManyStreams(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	tc, err := b.tunnel(t, "api.test", "h2")
	if err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN = %q, want h2", p)
	}
	// The client preface and an empty SETTINGS frame (RFC 9113 3.4).
	if _, err := io.WriteString(tc, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	// The server's first frame is its SETTINGS.
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(tc, hdr); err != nil || hdr[3] != 0x4 {
		t.Fatalf("first frame %x, %v; want SETTINGS", hdr, err)
	}
	payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
	if _, err := io.ReadFull(tc, payload); err != nil {
		t.Fatal(err)
	}
	streams := -1 // not sent: unlimited
	for i := 0; i+6 <= len(payload); i += 6 {
		if id := int(payload[i])<<8 | int(payload[i+1]); id == 0x3 { // SETTINGS_MAX_CONCURRENT_STREAMS
			streams = int(payload[i+2])<<24 | int(payload[i+3])<<16 | int(payload[i+4])<<8 | int(payload[i+5])
		}
	}
	if streams < 1 || streams > maxCredentialStreams {
		t.Fatalf("the proxy allows %d concurrent streams in a tunnel; want 1 to %d", streams, maxCredentialStreams)
	}
}

// The attack: reach an address the policy refuses through the
// interception path. The credentialed host resolves there from the start
// (the CONNECT is refused, as any tunnel's), or a name under it that a
// wildcard allows is asked for: the CA's name constraints permit it, but
// only the exact credentialed host is intercepted, so its tunnel is the
// upstream's own TLS and the bottle's CA vouches for nothing there.
func TestCredentialAttackAddressAndSubdomain(t *testing.T) {
	t.Parallel()
	t.Run("blocked address at CONNECT", func(t *testing.T) {
		t.Parallel()
		b := startCred(t, true, nil)
		b.res.mu.Lock()
		b.res.hosts["api.test"] = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
		b.res.mu.Unlock()
		resp, body := dialProxy(t, b.proxy).do(t, "CONNECT", "api.test:"+strconv.Itoa(b.up.port), "")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) != deniedBlocked {
			t.Fatalf("CONNECT = %s (%s) %q; want 403 %s", resp.Status, resp.Header.Get(DeniedHeader), body, deniedBlocked)
		}
	})
	t.Run("a name under the credentialed host", func(t *testing.T) {
		t.Parallel()
		b := startCred(t, true, func(c *Config) { c.EgressAllow = append(c.EgressAllow, "*.api.test:*") })
		b.res.mu.Lock()
		b.res.hosts["x.api.test"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		b.res.mu.Unlock()
		c := dialProxy(t, b.proxy)
		if resp, _ := c.do(t, "CONNECT", "x.api.test:"+strconv.Itoa(b.up.port), ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT = %s", resp.Status)
		}
		// The upstream's certificate names api.test and plain.test, not
		// x.api.test: a client trusting the bottle's CA alone must fail on
		// a certificate the bottle's CA did not issue.
		var issuer string
		tc := tls.Client(c.Conn, &tls.Config{ServerName: "x.api.test", InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				issuer = cs.PeerCertificates[0].Issuer.CommonName
				return nil
			}})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if issuer != "upstream test CA" {
			t.Fatalf("the peer of x.api.test was issued by %q; want the upstream's own CA (a plain tunnel)", issuer)
		}
		fmt.Fprintf(tc, "GET /sub HTTP/1.1\r\nHost: x.api.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if reqs := b.up.requests(); len(reqs) != 1 || reqs[0].header.Get("X-Api-Key") != "" || reqs[0].header.Get("Authorization") != "" {
			t.Fatalf("upstream requests = %+v; want one with no credential", reqs)
		}
	})
}

// The attack: leave goroutines behind. Tunnels of every kind (HTTP/1.1,
// HTTP/2, a refusal, a WebSocket, a failed handshake) are opened and
// closed; the proxy must end up with the goroutines it had. Not parallel:
// it counts the process's goroutines.
func TestCredentialAttackGoroutines(t *testing.T) {
	b := startCred(t, true, func(c *Config) { c.tunnelIdle = time.Minute })
	// settle waits up to 5s for the count to fall to at most want.
	settle := func(want int) int {
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(5 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
			time.Sleep(20 * time.Millisecond)
		}
		return n
	}
	// One round first: the upstream and the transports start their own
	// goroutines once.
	round := func() {
		for _, h2 := range []bool{false, true} {
			cl := b.agent(t, h2)
			resp, err := cl.Get(b.url("api.test", "/g"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cl.CloseIdleConnections()
		}
		_ = b.rawRequest(t, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", 1)
		tc, err := b.tunnel(t, "api.test", "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade = %v, %v", resp, err)
		}
		tc.Close()
		saved := b.caPool
		b.caPool = x509.NewCertPool()
		if _, err := b.tunnel(t, "api.test"); err == nil {
			t.Fatal("a client trusting nothing completed the handshake")
		}
		b.caPool = saved
	}
	round()
	// The first round's connections end as the later ones' do.
	time.Sleep(200 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 5 {
		round()
	}
	if after := settle(before + 2); after > before+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after five rounds of tunnels:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// The attack: an upstream error whose text quotes the request's headers
// (as Go's HTTP/2 transport's does for a Connection header) would hand
// the credential to the agent in the 502, and to the log. failed must
// leave the value out whatever the error says.
func TestCredentialAttackErrorQuotesValue(t *testing.T) {
	t.Parallel()
	var log logBuffer
	e := &egress{p: &policy{bottle: "hello"}, dl: &decisionLog{log: newLogger(&log, "hello"), st: &statusState{}}}
	a := newAttempt(e, verdict{method: http.MethodConnect, host: "api.test", port: 443, rule: "api.test"}, nil)
	h := &credentialHandler{e: e, a: a, creds: testCreds, names: credentialNames(testCreds)}
	for _, cause := range []error{
		fmt.Errorf("http2: invalid Connection request header: [%q]", secretKey),
		&url.Error{Op: "Get", URL: "https://api.test/", Err: fmt.Errorf("malformed: Bearer %s", secretToken)},
	} {
		w := httptest.NewRecorder()
		h.failed(w, httptest.NewRequest(http.MethodGet, "https://api.test/x", nil), cause)
		if w.Code != http.StatusBadGateway {
			t.Errorf("failed answered %d, want 502", w.Code)
		}
		if body := w.Body.String(); strings.Contains(body, "VALUE-never-logged") || !strings.Contains(body, "left out") {
			t.Errorf("the 502 reads %q; want the error without the value", body)
		}
	}
	checkNoCredential(t, &log)
}

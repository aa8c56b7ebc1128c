package bundle

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
)

// The credentials' values: no log line, error or denial may hold them.
const (
	secretKey   = "sk-test-VALUE-never-logged-41c7"
	secretToken = "ghp-test-VALUE-never-logged-9e02"
)

// testCA is a CA of the tests' own, which the upstream's certificate is
// issued by: the bundle trusts it through the credentials file's trust.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (c *testCA) leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (c *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// seen is one request the upstream received.
type seen struct {
	host, path, proto string
	header            http.Header
}

// credUpstream is a TLS server (HTTP/2 and HTTP/1.1) for api.test and
// plain.test, with a certificate of its own test CA, that echoes the
// headers it received. /redirect answers 302 to another host; /ws
// switches protocols and echoes bytes.
type credUpstream struct {
	*httptest.Server
	ca   *testCA
	port int
	mu   sync.Mutex
	reqs []seen
}

func startCredUpstream(t testing.TB) *credUpstream {
	t.Helper()
	u := &credUpstream{ca: newTestCA(t)}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{host: r.Host, path: r.URL.Path, proto: r.Proto, header: r.Header.Clone()})
		u.mu.Unlock()
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "https://elsewhere.test/stolen", http.StatusFound)
			return
		case "/ws":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(conn, brw)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	u.EnableHTTP2 = true
	u.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the untrusted tests' handshakes fail
	u.TLS = &tls.Config{Certificates: []tls.Certificate{u.ca.leaf(t, "api.test", "plain.test")}}
	u.StartTLS()
	t.Cleanup(u.Close)
	u.port = u.Listener.Addr().(*net.TCPAddr).Port
	return u
}

func (u *credUpstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

// credBundle is a bundle whose proxy adds two credentials to api.test and
// none to plain.test, both allowed on any port.
type credBundle struct {
	*testBundle
	up     *credUpstream
	ca     *bottle.CA
	caPool *x509.CertPool // the bottle's CA alone: the agent's trust
	res    *resolver
}

// credFile writes a credentials file for bottleCA and returns its path.
func credFile(t testing.TB, bottleCA *bottle.CA, trust []byte, creds ...bottle.BundleCredential) string {
	t.Helper()
	data, err := json.Marshal(bottle.BundleSecrets{CACert: string(bottleCA.Cert), CAKey: string(bottleCA.Key), Trust: string(trust), Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var testCreds = []bottle.BundleCredential{
	{Host: "api.test", Header: "x-api-key", Value: secretKey},
	{Host: "API.test", Header: "Authorization", Prefix: "Bearer ", Value: secretToken},
}

// startCred runs the proxy with the credentials; trusted says whether the
// upstream's CA is in trust. change, if set, edits the config last.
func startCred(t testing.TB, trusted bool, change func(*Config)) *credBundle {
	t.Helper()
	up := startCredUpstream(t)
	bottleCA, err := ca.New("hello", []string{"api.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var trust []byte
	if trusted {
		trust = up.ca.pem
	}
	res := newResolver(map[string]string{"api.test": "127.0.0.1", "plain.test": "127.0.0.1"})
	cfg := baseConfig(res, "api.test:*", "plain.test:*")
	cfg.CredentialsFile = credFile(t, bottleCA, trust, testCreds...)
	// The tests trust nothing but what the file says: the fallback roots
	// would not hold the test CA anyway.
	cfg.upstreamRoots = x509.NewCertPool
	if change != nil {
		change(&cfg)
	}
	b := &credBundle{testBundle: startBundle(t, cfg), up: up, ca: bottleCA, caPool: x509.NewCertPool(), res: res}
	b.caPool.AppendCertsFromPEM(bottleCA.Cert)
	t.Cleanup(func() { checkNoCredential(t, b.log) })
	return b
}

// checkNoCredential: the values never reach the log.
func checkNoCredential(t testing.TB, log *logBuffer) {
	t.Helper()
	for _, s := range []string{secretKey, secretToken, "VALUE-never-logged"} {
		if strings.Contains(log.String(), s) {
			t.Errorf("the log holds a credential's value:\n%s", log)
		}
	}
}

// agent is the agent's HTTP client: through the proxy, trusting the
// bottle's CA alone, HTTP/2 when h2.
func (b *credBundle) agent(t testing.TB, h2 bool) *http.Client {
	t.Helper()
	pu, _ := url.Parse("http://" + b.proxy)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: b.caPool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (b *credBundle) url(host, path string) string {
	return "https://" + net.JoinHostPort(host, strconv.Itoa(b.up.port)) + path
}

// tunnel opens an intercepted tunnel to api.test and runs a TLS client
// named sni over it, trusting the bottle's CA alone.
func (b *credBundle) tunnel(t *testing.T, sni string, alpn ...string) (*tls.Conn, error) {
	t.Helper()
	c := dialProxy(t, b.proxy)
	resp, _ := c.do(t, "CONNECT", "api.test:"+strconv.Itoa(b.up.port), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	tc := tls.Client(c.Conn, &tls.Config{ServerName: sni, RootCAs: b.caPool, NextProtos: alpn})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	return tc, tc.Handshake()
}

func TestCredentialAdded(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	tests := []struct {
		name      string
		h2        bool
		wantMajor int
	}{
		{"HTTP/1.1", false, 1},
		{"HTTP/2", true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, b.url("api.test", "/v1/messages?key=q"), strings.NewReader("{}"))
			// The agent's own values of the headers are replaced, whatever
			// their case.
			req.Header["x-api-key"] = []string{"agent-own-key"}
			req.Header.Set("X-Api-Key", "agent-own-key-2")
			req.Header.Set("Authorization", "Bearer agent-own")
			resp, err := b.agent(t, tt.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var echoed http.Header
			if err := json.NewDecoder(resp.Body).Decode(&echoed); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tt.wantMajor {
				t.Fatalf("response %s %s, want 200 over HTTP/%d", resp.Proto, resp.Status, tt.wantMajor)
			}
			if got := echoed.Values("X-Api-Key"); !slices.Equal(got, []string{secretKey}) {
				t.Errorf("upstream's X-Api-Key = %q, want the credential alone", got)
			}
			if got := echoed.Values("Authorization"); !slices.Equal(got, []string{"Bearer " + secretToken}) {
				t.Errorf("upstream's Authorization = %q, want the credential alone", got)
			}
			// The agent saw the bottle CA's leaf: it trusts nothing else.
			if leaf := resp.TLS.PeerCertificates[0]; leaf.Issuer.CommonName != "bottle-apply CA for bottle hello" || len(resp.TLS.PeerCertificates) != 1 {
				t.Errorf("the agent's peer is %s, issued by %s", leaf.Subject, leaf.Issuer)
			}
		})
	}
	reqs := b.up.requests()
	if len(reqs) != 2 || reqs[0].proto != "HTTP/2.0" || reqs[0].host != net.JoinHostPort("api.test", strconv.Itoa(b.up.port)) {
		t.Errorf("upstream requests = %+v; want two, over HTTP/2 upstream, for api.test", reqs)
	}
	rule, port := "api.test:*", b.up.port
	checkDecisions(t, b.log, []Decision{
		{Daemon: "egress", Decision: "allow", Host: "api.test", Port: port, Method: "CONNECT", Rule: rule},
		{Daemon: "egress", Decision: "allow", Host: "api.test", Port: port, Method: "POST", Rule: rule, Credential: "api.test x-api-key,authorization", Path: "/v1/messages"},
		{Daemon: "egress", Decision: "allow", Host: "api.test", Port: port, Method: "CONNECT", Rule: rule},
		{Daemon: "egress", Decision: "allow", Host: "api.test", Port: port, Method: "POST", Rule: rule, Credential: "api.test x-api-key,authorization", Path: "/v1/messages"},
	})
}

// The agent's client checks the bundle's certificate against the
// bottle's CA: a client that trusts the system roots (or the upstream's
// CA) instead refuses it, so the interception is the bottle CA's alone.
func TestCredentialOnlyTheBottleCAVouches(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	b.caPool = b.up.ca.pool()
	if _, err := b.tunnel(t, "api.test"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client trusting the upstream's CA accepted the interception: %v", err)
	}
	if n := len(b.up.requests()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	ds := waitDecisions(t, b.log, 1)
	if len(ds) != 1 || ds[0].Allowed() || !strings.Contains(ds[0].Reason, "does it trust the bottle's CA") {
		t.Fatalf("decisions = %+v, want one refusal of the handshake", ds)
	}
}

// The attack: CONNECT api.test, then a request for another Host (a host
// on the same CDN) inside the tunnel. Without the check the credential
// would go with it.
func TestCredentialAttackOtherHost(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	port := strconv.Itoa(b.up.port)
	tests := []struct {
		name, request string
	}{
		{"another host", "GET /a HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n"},
		{"another port", "GET /a HTTP/1.1\r\nHost: api.test:1\r\n\r\n"},
		{"absolute form for another host", "GET https://elsewhere.test/a HTTP/1.1\r\nHost: api.test\r\n\r\n"},
		{"a suffix of the host", "GET /a HTTP/1.1\r\nHost: api.test.elsewhere.test:" + port + "\r\n\r\n"},
		{"no host", "GET /a HTTP/1.0\r\n\r\n"},
		{"CONNECT inside", "CONNECT elsewhere.test:443 HTTP/1.1\r\nHost: elsewhere.test:443\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := b.tunnel(t, "api.test", "http/1.1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(tc, tt.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) != deniedHost {
				t.Errorf("%s = %s (%s) %q; want 403 %s", tt.request, resp.Status, resp.Header.Get(DeniedHeader), body, deniedHost)
			}
		})
	}
	t.Run("HTTP/2 :authority", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, b.url("api.test", "/a"), nil)
		req.Host = "elsewhere.test"
		resp, err := b.agent(t, true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.ProtoMajor != 2 {
			t.Errorf("= %s %s, want 403 over HTTP/2", resp.Proto, resp.Status)
		}
	})
	if n := len(b.up.requests()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	var refusals int
	for _, d := range b.log.decisions() {
		if d.Method == "CONNECT" && d.Allowed() {
			continue
		}
		refusals++
		if d.Allowed() || d.Credential != "" || !strings.Contains(d.Reason, "no credential was added") {
			t.Errorf("decision %+v, want a refusal with no credential", d)
		}
	}
	if refusals != len(tests)+1 {
		t.Errorf("%d refusals logged, want %d:\n%s", refusals, len(tests)+1, b.log)
	}
}

// The attack: CONNECT api.test with a ClientHello for another name.
func TestCredentialAttackOtherSNI(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	if _, err := b.tunnel(t, "elsewhere.test"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("TLS as elsewhere.test in a tunnel to api.test: %v, want the proxy's alert access_denied", err)
	}
	// A ClientHello without SNI is taken: the certificate is the CONNECT
	// host's, and each request's Host is checked.
	c := dialProxy(t, b.proxy)
	if resp, _ := c.do(t, "CONNECT", "api.test:"+strconv.Itoa(b.up.port), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: "api.test", Roots: b.caPool})
			return err
		}})
	fmt.Fprintf(tc, "GET /nosni HTTP/1.1\r\nHost: api.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a request without SNI = %v, %v", resp, err)
	}
	resp.Body.Close()
	ds := b.log.decisions()
	if len(ds) == 0 || ds[0].Allowed() || ds[0].Reason == "" || !strings.Contains(ds[0].Reason, `names "elsewhere.test", not the CONNECT host api.test`) {
		t.Fatalf("decisions = %+v, want a refusal naming elsewhere.test", ds)
	}
	if reqs := b.up.requests(); len(reqs) != 1 || reqs[0].path != "/nosni" {
		t.Fatalf("upstream requests = %+v, want the one without SNI", reqs)
	}
}

// A redirect goes back to the agent: the proxy follows none.
func TestCredentialRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	resp, err := b.agent(t, false).Get(b.url("api.test", "/redirect"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://elsewhere.test/stolen" {
		t.Fatalf("= %s to %q, want the upstream's 302", resp.Status, resp.Header.Get("Location"))
	}
	if reqs := b.up.requests(); len(reqs) != 1 || reqs[0].path != "/redirect" {
		t.Fatalf("upstream requests = %+v, want the one", reqs)
	}
	if b.res.wasAsked("elsewhere.test") {
		t.Fatal("the proxy resolved the redirect's host")
	}
}

// A WebSocket upgrade gets the credential, and the switched connection
// carries bytes both ways.
func TestCredentialWebSocket(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	tc, err := b.tunnel(t, "api.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: api.test:%d\r\nConnection: Upgrade, X-Api-Key\r\nUpgrade: websocket\r\nX-Api-Key: agent-own\r\n\r\n", b.up.port)
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade = %s", resp.Status)
	}
	for _, line := range []string{"ping\n", strings.Repeat("y", 40<<10) + "\n"} {
		if _, err := io.WriteString(tc, line); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("echo of %d bytes = %d bytes, %v", len(line), len(got), err)
		}
	}
	reqs := b.up.requests()
	if len(reqs) != 1 || !slices.Equal(reqs[0].header.Values("X-Api-Key"), []string{secretKey}) {
		t.Fatalf("upstream's upgrade request = %+v, want the credential alone", reqs)
	}
}

// A CONNECT to another allowed host stays a tunnel: the client's TLS
// reaches the upstream, whose own certificate it verifies, and no header
// is added.
func TestCredentialOtherHostIsATunnel(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	b.caPool = b.up.ca.pool() // the upstream's CA, not the bottle's
	resp, err := b.agent(t, false).Get(b.url("plain.test", "/p"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var echoed http.Header
	if err := json.NewDecoder(resp.Body).Decode(&echoed); err != nil {
		t.Fatal(err)
	}
	if leaf := resp.TLS.PeerCertificates[0]; leaf.Issuer.CommonName != "upstream test CA" {
		t.Errorf("the client's peer was issued by %s, not the upstream's CA", leaf.Issuer)
	}
	if echoed.Get("X-Api-Key") != "" || echoed.Get("Authorization") != "" {
		t.Errorf("a plain tunnel got a credential header")
	}
	checkDecisions(t, b.log, []Decision{
		{Daemon: "egress", Decision: "allow", Host: "plain.test", Port: b.up.port, Method: "CONNECT", Rule: "plain.test:*"},
	})
}

// A plain-HTTP proxy request for a credentialed host is refused: the
// credential travels only over TLS.
func TestCredentialPlainHTTPRefused(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, nil)
	for _, target := range []string{"http://api.test:" + strconv.Itoa(b.up.port) + "/x", "http://API.test./x"} {
		resp, body := dialProxy(t, b.proxy).do(t, "GET", target, "")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) != deniedCredentialTLS || !strings.Contains(body, "only over TLS") {
			t.Errorf("GET %s = %s (%s) %q; want 403 %s", target, resp.Status, resp.Header.Get(DeniedHeader), body, deniedCredentialTLS)
		}
	}
	if n := len(b.up.requests()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	if b.res.wasAsked("api.test") {
		t.Fatal("the proxy resolved api.test for a refused request")
	}
}

// An upstream whose certificate the bundle does not trust gets nothing:
// the agent gets a 502, and no header leaks.
func TestCredentialUpstreamNotTrusted(t *testing.T) {
	t.Parallel()
	b := startCred(t, false, nil)
	resp, err := b.agent(t, false).Get(b.url("api.test", "/x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "certificate") {
		t.Fatalf("= %s %q, want 502 about the certificate", resp.Status, body)
	}
	if strings.Contains(string(body), "VALUE-never-logged") {
		t.Fatalf("the 502 holds a credential: %q", body)
	}
	if n := len(b.up.requests()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
}

// The attack: the name rebinds to an address the proxy never connects to
// after the CONNECT. The request's own dial goes through the address
// policy, is refused, and the credential goes nowhere.
func TestCredentialAttackRebinding(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, func(c *Config) { c.tunnelIdle = time.Minute })
	tc, err := b.tunnel(t, "api.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	b.res.mu.Lock()
	b.res.hosts["api.test"] = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	b.res.mu.Unlock()
	fmt.Fprintf(tc, "GET /x HTTP/1.1\r\nHost: api.test:%d\r\n\r\n", b.up.port)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) != deniedBlocked {
		t.Fatalf("= %s (%s), want 403 %s", resp.Status, resp.Header.Get(DeniedHeader), deniedBlocked)
	}
	if n := len(b.up.requests()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
}

// An intercepted tunnel that carries nothing for tunnelIdle is closed,
// and so is every one when the bundle stops.
func TestCredentialIdleAndShutdown(t *testing.T) {
	t.Parallel()
	b := startCred(t, true, func(c *Config) { c.tunnelIdle = 300 * time.Millisecond })
	tc, err := b.tunnel(t, "api.test", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := tc.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from an idle tunnel succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the idle tunnel closed after %s", d)
	}
	b.log.find(t, "egress connection idle, closed")

	tc, err = b.tunnel(t, "api.test", "h2")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(tc); err != nil && strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the tunnel outlived the bundle: %v", err)
	}
}

// A credentials file the bundle cannot use stops it from starting, with
// an error naming the file and never what it holds.
func TestCredentialsFileErrors(t *testing.T) {
	t.Parallel()
	good, err := ca.New("hello", []string{"api.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.New("hello", []string{"other.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cred := bottle.BundleCredential{Host: "api.test", Header: "X-Api-Key", Value: secretKey}
	write := func(t *testing.T, content string) string {
		path := filepath.Join(t.TempDir(), "credentials.json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "absent.json") }, "no such file"},
		{"not JSON", func(t *testing.T) string { return write(t, `{"credentials": [{"value": "`+secretKey+`" x}]}`) }, "not valid JSON"},
		{"truncated", func(t *testing.T) string { return write(t, `{"credentials": [{"value": "`+secretKey) }, "not valid JSON"},
		{"wrong type", func(t *testing.T) string {
			return write(t, `{"credentials": [{"value": 1}], "caKey": "`+secretKey+`"}`)
		}, "credentials.value"},
		{"no credentials", func(t *testing.T) string { return credFile(t, good, nil) }, "no credentials"},
		{"CA for other hosts", func(t *testing.T) string { return credFile(t, other, nil, cred) }, "does not permit"},
		{"key of another CA", func(t *testing.T) string {
			return credFile(t, &bottle.CA{Cert: good.Cert, Key: other.Key}, nil, cred)
		}, "does not belong"},
		{"value with a line break", func(t *testing.T) string {
			return credFile(t, good, nil, bottle.BundleCredential{Host: "api.test", Header: "X-Api-Key", Value: secretKey + "\r\nX-Evil: 1"})
		}, "line break"},
		{"empty value", func(t *testing.T) string {
			return credFile(t, good, nil, bottle.BundleCredential{Host: "api.test", Header: "X-Api-Key"})
		}, "empty"},
		{"bad header", func(t *testing.T) string {
			return credFile(t, good, nil, bottle.BundleCredential{Host: "api.test", Header: "X Api Key", Value: secretKey})
		}, "not a header name"},
		{"IP host", func(t *testing.T) string {
			return credFile(t, good, nil, bottle.BundleCredential{Host: "127.0.0.1", Header: "X-Api-Key", Value: secretKey})
		}, "not a host name"},
		{"same header twice", func(t *testing.T) string { return credFile(t, good, nil, cred, cred) }, "two credentials"},
		{"bad trust", func(t *testing.T) string { return credFile(t, good, []byte("not a certificate"), cred) }, "trust"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := tt.path(t)
			cfg := baseConfig(newResolver(nil), "api.test:*")
			cfg.CredentialsFile = path
			cfg.upstreamRoots = x509.NewCertPool
			log := &logBuffer{}
			err := Run(t.Context(), cfg, log)
			if err == nil {
				t.Fatal("the bundle started")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not name %s and say %q", msg, path, tt.want)
			}
			for _, s := range []string{secretKey, "PRIVATE KEY", string(good.Key[40:80]), string(other.Key[40:80]), "X-Evil"} {
				if strings.Contains(msg, s) || strings.Contains(log.String(), s) {
					t.Errorf("the error or the log holds the file's content: %q", msg)
				}
			}
		})
	}
}

func TestConfigFromEnvCredentialsFile(t *testing.T) {
	t.Parallel()
	cfg := ConfigFromEnv(func(k string) string {
		if k == "BOTTLE_CREDENTIALS_FILE" {
			return " " + bottle.BundleSecretsFile + " "
		}
		return ""
	})
	if cfg.CredentialsFile != bottle.BundleSecretsFile {
		t.Fatalf("CredentialsFile = %q", cfg.CredentialsFile)
	}
}

// The production root store is the fallback bundle's: it holds many
// roots, and not the tests' own CA.
func TestFallbackRoots(t *testing.T) {
	t.Parallel()
	pool := ca.FallbackRoots()
	if pool.Equal(x509.NewCertPool()) {
		t.Fatal("the fallback root store is empty")
	}
	u := newTestCA(t)
	leaf := u.leaf(t, "api.test")
	cert, _ := x509.ParseCertificate(leaf.Certificate[0])
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "api.test", Roots: pool}); err == nil {
		t.Fatal("the fallback roots trust a test CA")
	}
	if err := addTrust(pool, u.pem); err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "api.test", Roots: pool}); err != nil {
		t.Fatalf("trust did not add the test CA: %v", err)
	}
}

// BenchmarkCredentialRequest is what adding a credential costs a
// request: one through an intercepted tunnel (the bundle ends the
// agent's TLS, sets the header, and sends it on over its own), against
// one through a plain tunnel to the same upstream; keep-alive HTTP/1.1,
// the upstream on loopback.
func BenchmarkCredentialRequest(b *testing.B) {
	cb := startCred(b, true, nil)
	for _, bc := range []struct {
		name, host string
		roots      *x509.CertPool
	}{
		{"intercepted", "api.test", cb.caPool},
		{"tunnel", "plain.test", cb.up.ca.pool()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pu, _ := url.Parse("http://" + cb.proxy)
			tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: bc.roots},
				TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			u := cb.url(bc.host, "/bench")
			for b.Loop() {
				resp, err := c.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %s", u, resp.Status)
				}
			}
		})
	}
}

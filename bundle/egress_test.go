package bundle

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// policyForTest is a production-like policy: 10.1.2.2 is the bundle.
func policyForTest(t testing.TB) (*policy, netip.AddrPort) {
	t.Helper()
	own := map[netip.Addr]bool{netip.MustParseAddr("10.1.2.2"): true}
	p, err := newPolicy(Config{
		Bottle: "hello", Daemons: []string{"egress"},
		EgressAllow: []string{"api.example.com", "*.pkg.example.org:443", "ssh.example.net:22", "any.example.net:*"},
		// The ranges of the forbidden addresses too: they stay forbidden.
		AllowCIDRs: []string{"10.1.0.0/16", "2001:db8::/32", "127.0.0.0/8", "169.254.0.0/16", "fe80::/10",
			"0.0.0.0/8", "ff00::/8", "::/127", "224.0.0.0/4"},
		ListenIP: "10.1.2.2", ProxyPort: "8888", DNSPort: "53", StatusAddr: DefaultStatusAddr,
		HostAddrs: []string{"10.1.2.1", "fd00:1::1"},
		checkAddr: func(ap netip.AddrPort) string { return blockedKind(ap.Addr(), own) },
		procNet:   "testdata/proc-net",
	})
	if err != nil {
		t.Fatalf("newPolicy: %v", err)
	}
	return p, netip.MustParseAddrPort("10.1.2.2:8888")
}

// The decision for each kind of request line, without any network.
func TestEgressDecide(t *testing.T) {
	t.Parallel()
	p, self := policyForTest(t)
	e := &egress{p: p, self: self}
	tests := []struct {
		request string // request line
		host    string
		port    int
		rule    string // when allowed
		short   string // when denied
		reason  string // a part of it
	}{
		{request: "CONNECT api.example.com:443", host: "api.example.com", port: 443, rule: "api.example.com"},
		{request: "GET http://api.example.com/x?y=1", host: "api.example.com", port: 80, rule: "api.example.com"},
		{request: "GET https://api.example.com/", host: "api.example.com", port: 443, rule: "api.example.com"},
		{request: "GET http://API.Example.COM.:80/", host: "api.example.com", port: 80, rule: "api.example.com"},
		{request: "POST http://api.example.com:8080/", host: "api.example.com", port: 8080, short: deniedNoRule,
			reason: "no rule in spec.bundle.egress.allow allows api.example.com:8080 (rule api.example.com allows other ports)"},
		{request: "CONNECT x.pkg.example.org:443", host: "x.pkg.example.org", port: 443, rule: "*.pkg.example.org:443"},
		{request: "CONNECT a.b.pkg.example.org:443", host: "a.b.pkg.example.org", port: 443, rule: "*.pkg.example.org:443"},
		{request: "CONNECT x.pkg.example.org:80", host: "x.pkg.example.org", port: 80, short: deniedNoRule, reason: "allows other ports"},
		{request: "CONNECT pkg.example.org:443", host: "pkg.example.org", port: 443, short: deniedNoRule,
			reason: "no rule in spec.bundle.egress.allow allows pkg.example.org:443"},
		{request: "CONNECT x.pkg.example.org.evil.test:443", host: "x.pkg.example.org.evil.test", port: 443, short: deniedNoRule},
		{request: "CONNECT ssh.example.net:22", host: "ssh.example.net", port: 22, rule: "ssh.example.net:22"},
		{request: "CONNECT ssh.example.net:443", host: "ssh.example.net", port: 443, short: deniedNoRule},
		{request: "CONNECT any.example.net:65535", host: "any.example.net", port: 65535, rule: "any.example.net:*"},
		{request: "CONNECT denied.test:443", host: "denied.test", port: 443, short: deniedNoRule,
			reason: "no rule in spec.bundle.egress.allow allows denied.test:443"},
		{request: "CONNECT 10.1.3.4:443", host: "10.1.3.4", port: 443, rule: "10.1.0.0/16"},
		{request: "GET http://10.1.3.4:8080/", host: "10.1.3.4", port: 8080, rule: "10.1.0.0/16"},
		{request: "CONNECT 10.2.0.1:443", host: "10.2.0.1", port: 443, short: deniedAddress,
			reason: "no range in spec.network.allowCIDRs holds 10.2.0.1"},
		{request: "CONNECT [2001:db8::1]:443", host: "2001:db8::1", port: 443, rule: "2001:db8::/32"},
		{request: "GET http://[2001:db8::1]/", host: "2001:db8::1", port: 80, rule: "2001:db8::/32"},
		{request: "CONNECT [2001:db9::1]:443", host: "2001:db9::1", port: 443, short: deniedAddress},
		{request: "CONNECT [::ffff:10.1.3.4]:443", host: "10.1.3.4", port: 443, rule: "10.1.0.0/16"},
		// Never, whatever allowCIDRs says.
		{request: "CONNECT 127.0.0.1:443", host: "127.0.0.1", port: 443, short: deniedBlocked, reason: "127.0.0.1 is a loopback address"},
		{request: "CONNECT [::ffff:127.0.0.1]:443", host: "127.0.0.1", port: 443, short: deniedBlocked, reason: "a loopback address"},
		{request: "CONNECT [::1]:443", host: "::1", port: 443, short: deniedBlocked, reason: "a loopback address"},
		{request: "GET http://169.254.169.254/latest/meta-data/", host: "169.254.169.254", port: 80, short: deniedBlocked, reason: "a link-local address"},
		{request: "CONNECT [fe80::1]:443", host: "fe80::1", port: 443, short: deniedBlocked, reason: "a link-local address"},
		{request: "CONNECT 0.0.0.0:443", host: "0.0.0.0", port: 443, short: deniedBlocked, reason: "an unspecified address"},
		{request: "CONNECT [ff02::1]:443", host: "ff02::1", port: 443, short: deniedBlocked, reason: "a multicast address"},
		{request: "CONNECT 224.0.0.251:5353", host: "224.0.0.251", port: 5353, short: deniedBlocked, reason: "a multicast address"},
		{request: "CONNECT 192.168.1.1:443", host: "192.168.1.1", port: 443, short: deniedAddress, reason: "no range in spec.network.allowCIDRs holds 192.168.1.1"},
		{request: "CONNECT 10.1.2.2:22", host: "10.1.2.2", port: 22, short: deniedBlocked, reason: "an address of the bundle itself"},
		{request: "CONNECT 10.1.2.2:8888", host: "10.1.2.2", port: 8888, short: deniedSelf, reason: "10.1.2.2:8888 is this egress proxy itself"},
		// The host, by BOTTLE_HOST_ADDRS or as a gateway of the routes
		// (testdata/proc-net), even inside an allowCIDR.
		{request: "CONNECT 10.1.2.1:443", host: "10.1.2.1", port: 443, short: deniedBlocked,
			reason: "10.1.2.1 is the host's address on the bottle's networks; the proxy never connects there"},
		{request: "CONNECT [::ffff:10.1.2.1]:22", host: "10.1.2.1", port: 22, short: deniedBlocked, reason: "the host's address"},
		{request: "CONNECT 10.1.0.1:443", host: "10.1.0.1", port: 443, short: deniedBlocked, reason: "10.1.0.1 is a gateway of the bundle's routes"},
		{request: "CONNECT [2001:db8::1:1]:443", host: "2001:db8::1:1", port: 443, short: deniedBlocked, reason: "a gateway of the bundle's routes"},
		{request: "CONNECT 10.213.0.17:443", host: "10.213.0.17", port: 443, short: deniedAddress, reason: "no range in spec.network.allowCIDRs holds 10.213.0.17"},
		// Malformed targets.
		{request: "CONNECT api.example.com", host: "api.example.com", short: deniedBadTarget, reason: "is not host:port"},
		{request: "CONNECT :443", short: deniedBadTarget},
		{request: "GET ftp://api.example.com/", host: "api.example.com", short: deniedBadTarget, reason: `scheme "ftp" is not proxied`},
		{request: "GET http://api.example.com:0/", host: "api.example.com", short: deniedBadTarget, reason: "port \"0\""},
		{request: "GET http://api.example.com:70000/", host: "api.example.com", short: deniedBadTarget},
		{request: "CONNECT api.example.com:" + strings.Repeat("9", 100), host: "api.example.com", short: deniedBadTarget,
			reason: `port "` + strings.Repeat("9", 61) + `..." is not a number`},
		// Names that are not host names never reach the rules.
		{request: "CONNECT .pkg.example.org:443", host: ".pkg.example.org", port: 443, short: deniedBadTarget, reason: "it has an empty label"},
		{request: "GET http://api.example.com../", host: "api.example.com.", port: 80, short: deniedBadTarget, reason: "it has an empty label"},
		{request: "CONNECT api.example.com..:443", host: "api.example.com.", port: 443, short: deniedBadTarget, reason: "it has an empty label"},
		{request: "CONNECT x..pkg.example.org:443", host: "x..pkg.example.org", port: 443, short: deniedBadTarget, reason: "it has an empty label"},
		{request: "CONNECT *.pkg.example.org:443", host: "*.pkg.example.org", port: 443, short: deniedBadTarget, reason: `it holds '*'`},
		{request: "CONNECT x!.pkg.example.org:443", host: "x!.pkg.example.org", port: 443, short: deniedBadTarget, reason: `it holds '!'`},
		{request: "CONNECT -x.pkg.example.org:443", host: "-x.pkg.example.org", port: 443, short: deniedBadTarget, reason: "starts or ends with '-'"},
		{request: "CONNECT " + strings.Repeat("a", 64) + ".pkg.example.org:443", host: strings.Repeat("a", 64) + ".pkg.example.org", port: 443,
			short: deniedBadTarget, reason: "a label is 64 bytes long, at most 63"},
		{request: "CONNECT " + strings.Repeat("a.", 127) + "pkg.example.org:443", host: strings.Repeat("a.", 125) + "...", port: 443,
			short: deniedBadTarget, reason: "the host is 269 bytes long; a host name has at most 253"},
	}
	for _, tt := range tests {
		t.Run(tt.request, func(t *testing.T) {
			t.Parallel()
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.request + " HTTP/1.1\r\nHost: x\r\n\r\n")))
			if err != nil {
				t.Fatalf("ReadRequest: %v", err)
			}
			v := e.decide(r)
			if v.host != tt.host || v.port != tt.port || v.method != r.Method {
				t.Errorf("target = %s %s port %d, want %s port %d", v.method, v.host, v.port, tt.host, tt.port)
			}
			if tt.short == "" {
				if !v.allowed() || v.rule != tt.rule || v.reason != "" {
					t.Fatalf("decide = %+v, want allowed by %s", v, tt.rule)
				}
				return
			}
			if v.allowed() || v.short != tt.short || v.rule != "" || !strings.Contains(v.reason, tt.reason) {
				t.Fatalf("decide = %+v, want denied %s with a reason containing %q", v, tt.short, tt.reason)
			}
			wantStatus := http.StatusForbidden
			if tt.short == deniedBadTarget {
				wantStatus = http.StatusBadRequest
			}
			if v.status != wantStatus {
				t.Fatalf("status = %d, want %d", v.status, wantStatus)
			}
		})
	}
}

func TestBlockedKind(t *testing.T) {
	t.Parallel()
	own := map[netip.Addr]bool{netip.MustParseAddr("10.1.2.2"): true, netip.MustParseAddr("fd00::2"): true}
	tests := map[string]string{
		"127.0.0.1": "a loopback address", "127.9.9.9": "a loopback address", "::1": "a loopback address",
		"::ffff:127.0.0.1": "a loopback address", "0.0.0.0": "an unspecified address", "::": "an unspecified address",
		"169.254.169.254": "a link-local address", "fe80::1": "a link-local address", "fe80::1%eth0": "a link-local address",
		"224.0.0.1": "a multicast address", "ff02::1": "a multicast address", "255.255.255.255": "a broadcast address",
		"10.1.2.2": "an address of the bundle itself", "fd00::2": "an address of the bundle itself",
		"::ffff:10.1.2.2": "an address of the bundle itself",
		"10.1.2.3":        "", "93.184.215.14": "", "2606:4700::1": "", "192.168.1.1": "",
	}
	for ip, want := range tests {
		if got := blockedKind(netip.MustParseAddr(ip), own); got != want {
			t.Errorf("blockedKind(%s) = %q, want %q", ip, got, want)
		}
	}
}

// upstreamHTTP is a loopback HTTP server that records what it was asked.
type upstreamHTTP struct {
	*httptest.Server
	port int
	mu   sync.Mutex
	seen []string // Host and request URI
}

func startHTTP(t *testing.T) *upstreamHTTP {
	t.Helper()
	u := &upstreamHTTP{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Host+" "+r.RequestURI)
		u.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "hello from upstream %s", r.URL.Path)
	}))
	t.Cleanup(u.Close)
	u.port = u.Listener.Addr().(*net.TCPAddr).Port
	return u
}

func (u *upstreamHTTP) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// proxyClient is an http.Client that uses the proxy for everything.
func proxyClient(t *testing.T, proxy string) *http.Client {
	t.Helper()
	pu, err := url.Parse("http://" + proxy)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestEgressConnectAllowed(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1", "a.wild.test": "127.0.0.1"})
	b := startBundle(t, baseConfig(res, "allowed.test:*", "*.wild.test:"+strconv.Itoa(echo.port)))
	for _, host := range []string{"allowed.test", "a.wild.test", "ALLOWED.test."} {
		c := dialProxy(t, b.proxy)
		target := net.JoinHostPort(host, strconv.Itoa(echo.port))
		resp, _ := c.do(t, "CONNECT", target, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT %s = %s", target, resp.Status)
		}
		c.echo(t, "hello through "+host)
		c.echo(t, strings.Repeat("x", 64<<10)) // more than one buffer
	}
	if n := echo.accepts.Load(); n != 3 {
		t.Fatalf("upstream accepts = %d, want 3", n)
	}
	want := []Decision{
		{Daemon: "egress", Decision: "allow", Host: "allowed.test", Port: echo.port, Method: "CONNECT", Rule: "allowed.test:*"},
		{Daemon: "egress", Decision: "allow", Host: "a.wild.test", Port: echo.port, Method: "CONNECT", Rule: "*.wild.test:" + strconv.Itoa(echo.port)},
		{Daemon: "egress", Decision: "allow", Host: "allowed.test", Port: echo.port, Method: "CONNECT", Rule: "allowed.test:*"},
	}
	checkDecisions(t, b.log, want)
}

func TestEgressHTTPAllowed(t *testing.T) {
	t.Parallel()
	up := startHTTP(t)
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1"})
	b := startBundle(t, baseConfig(res, "allowed.test:"+strconv.Itoa(up.port)))
	target := fmt.Sprintf("http://allowed.test:%d/secret/path?token=hunter2", up.port)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, target, strings.NewReader("body-secret"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer header-secret")
	resp, err := proxyClient(t, b.proxy).Do(req)
	if err != nil {
		t.Fatalf("POST through the proxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello from upstream /secret/path" {
		t.Fatalf("POST = %s %q", resp.Status, body)
	}
	if got, want := up.requests(), []string{fmt.Sprintf("allowed.test:%d /secret/path?token=hunter2", up.port)}; !slices.Equal(got, want) {
		t.Fatalf("upstream saw %q, want %q", got, want)
	}
	checkDecisions(t, b.log, []Decision{{Daemon: "egress", Decision: "allow", Host: "allowed.test", Port: up.port, Method: "POST", Rule: "allowed.test:" + strconv.Itoa(up.port)}})
	checkNoSecrets(t, b.log)
}

func TestEgressDenied(t *testing.T) {
	t.Parallel()
	never := startListener(t, "tcp", "127.0.0.1:0", false) // denied targets would land here
	port := strconv.Itoa(never.port)
	res := newResolver(map[string]string{
		"denied.test": "127.0.0.1", "allowed.test": "127.0.0.1", "a.wild.test": "127.0.0.1", "wild.test": "127.0.0.1",
	})
	cfg := baseConfig(res, "allowed.test:1", "*.wild.test:1")
	cfg.AllowCIDRs = []string{"10.0.0.0/8", "2001:db8::/32"}
	b := startBundle(t, cfg)
	tests := []struct {
		method, target, extra string
		short, body           string
	}{
		{"CONNECT", "denied.test:" + port, "", deniedNoRule,
			"bottle-apply egress proxy (bottle hello): denied CONNECT denied.test:" + port + ": no rule in spec.bundle.egress.allow allows denied.test:" + port + "\n"},
		{"GET", "http://denied.test:" + port + "/secret?token=hunter2", "Authorization: Bearer header-secret\r\n", deniedNoRule,
			"bottle-apply egress proxy (bottle hello): denied GET denied.test:" + port + ": no rule in spec.bundle.egress.allow allows denied.test:" + port + "\n"},
		{"CONNECT", "allowed.test:" + port, "", deniedNoRule, "(rule allowed.test:1 allows other ports)"},
		{"CONNECT", "a.wild.test:" + port, "", deniedNoRule, "(rule *.wild.test:1 allows other ports)"},
		{"CONNECT", "wild.test:1", "", deniedNoRule, "no rule in spec.bundle.egress.allow allows wild.test:1"},
		{"CONNECT", "127.0.0.1:" + port, "", deniedAddress, "no range in spec.network.allowCIDRs holds 127.0.0.1"},
		{"GET", "http://127.0.0.1:" + port + "/", "", deniedAddress, "no range in spec.network.allowCIDRs holds 127.0.0.1"},
		{"CONNECT", "[::1]:" + port, "", deniedAddress, "no range in spec.network.allowCIDRs holds ::1"},
		{"GET", "http://[::1]:" + port + "/", "", deniedAddress, "denied GET [::1]:" + port + ": no range"},
		{"CONNECT", "[2001:db9::1]:443", "", deniedAddress, "holds 2001:db9::1"},
	}
	for _, tt := range tests {
		c := dialProxy(t, b.proxy)
		resp, body := c.do(t, tt.method, tt.target, tt.extra)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) != tt.short ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s %s = %s, %s: %q; want 403, %s", tt.method, tt.target, resp.Status, DeniedHeader, resp.Header.Get(DeniedHeader), tt.short)
		}
		if !strings.Contains(body, tt.body) {
			t.Errorf("%s %s body = %q, want it to contain %q", tt.method, tt.target, body, tt.body)
		}
	}
	if n := never.accepts.Load(); n != 0 {
		t.Fatalf("a denied target was dialled %d times", n)
	}
	for _, h := range []string{"denied.test", "allowed.test", "a.wild.test", "wild.test"} {
		if res.wasAsked(h) {
			t.Errorf("the denied name %s was resolved", h)
		}
	}
	ds := b.log.decisions()
	if len(ds) != len(tests) {
		t.Fatalf("%d decision lines, want %d:\n%s", len(ds), len(tests), b.log)
	}
	for i, d := range ds {
		if d.Decision != "deny" || d.Method != tests[i].method || d.Reason == "" || d.Rule != "" {
			t.Errorf("decision %d = %+v, want a %s denial with a reason", i, d, tests[i].method)
		}
	}
	if d := ds[0]; d.Host != "denied.test" || d.Port != never.port {
		t.Errorf("first decision = %+v, want denied.test:%d", d, never.port)
	}
	checkNoSecrets(t, b.log)
}

// Literal addresses inside allowCIDRs go through (the test policy lets the
// proxy connect to 127.0.0.1 and ::1 only).
func TestEgressIPLiteralAllowed(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	up := startHTTP(t)
	cfg := baseConfig(newResolver(nil))
	cfg.AllowCIDRs = []string{"127.0.0.1/32", "::1/128"}
	b := startBundle(t, cfg)
	c := dialProxy(t, b.proxy)
	if resp, _ := c.do(t, "CONNECT", "127.0.0.1:"+strconv.Itoa(echo.port), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT 127.0.0.1 = %s", resp.Status)
	}
	c.echo(t, "by address")
	resp, body := dialProxy(t, b.proxy).do(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/v4", up.port), "")
	if resp.StatusCode != http.StatusOK || body != "hello from upstream /v4" {
		t.Fatalf("GET 127.0.0.1 = %s %q", resp.Status, body)
	}
	want := []Decision{
		{Daemon: "egress", Decision: "allow", Host: "127.0.0.1", Port: echo.port, Method: "CONNECT", Rule: "127.0.0.1/32"},
		{Daemon: "egress", Decision: "allow", Host: "127.0.0.1", Port: up.port, Method: "GET", Rule: "127.0.0.1/32"},
	}

	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback here (%v): the v6 literal is only checked by TestEgressDecide", err)
	} else {
		_ = ln.Close()
		echo6 := startListener(t, "tcp", "[::1]:0", true)
		c6 := dialProxy(t, b.proxy)
		if resp, _ := c6.do(t, "CONNECT", "[::1]:"+strconv.Itoa(echo6.port), ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT [::1] = %s", resp.Status)
		}
		c6.echo(t, "by v6 address")
		want = append(want, Decision{Daemon: "egress", Decision: "allow", Host: "::1", Port: echo6.port, Method: "CONNECT", Rule: "::1/128"})
	}
	checkDecisions(t, b.log, want)
}

// With the production address policy, an allowed name that resolves to
// loopback is refused at dial time, before any packet is sent; so is a
// loopback literal inside allowCIDRs.
func TestEgressDefaultPolicyRefusesLoopback(t *testing.T) {
	t.Parallel()
	b, res, never := startBlocking(t, map[string]string{"allowed.test": "127.0.0.1", "mapped.test": "::ffff:127.0.0.1"}, func(c *Config) {
		c.checkAddr = nil // the production policy
	})
	port := strconv.Itoa(never.port)
	tests := []blockedCase{
		{"CONNECT", "allowed.test:" + port, "denied CONNECT allowed.test:" + port + ": allowed.test resolves to 127.0.0.1, a loopback address"},
		{"GET", "http://allowed.test:" + port + "/", "denied GET allowed.test:" + port + ": allowed.test resolves to 127.0.0.1, a loopback address"},
		{"CONNECT", "mapped.test:" + port, "mapped.test resolves to 127.0.0.1, a loopback address"},
		{"CONNECT", "127.0.0.1:" + port, "denied CONNECT 127.0.0.1:" + port + ": 127.0.0.1 is a loopback address"},
	}
	ds := expectBlocked(t, b, never, tests)
	if !res.wasAsked("allowed.test") {
		t.Fatalf("allowed.test was not resolved: the refusal came from somewhere else than the dial")
	}
	if d := ds[0]; d.Decision != "deny" || d.Reason == "" || !strings.Contains(d.Reason, "allowed.test resolves to 127.0.0.1, a loopback address") || d.Rule != "" {
		t.Fatalf("decision = %+v, want a denial for the loopback address", d)
	}
}

// Every address of a name passes the policy: a forbidden one is skipped,
// and when all are forbidden the request is refused.
func TestEgressMultiAddressName(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	port := strconv.Itoa(echo.port)
	res := newResolver(map[string]string{
		"multi.test":  "127.0.0.2,127.0.0.1", // 127.0.0.2 is forbidden by the test policy
		"banned.test": "127.0.0.2,127.0.0.3",
	})
	b := startBundle(t, baseConfig(res, "multi.test:*", "banned.test:*"))
	c := dialProxy(t, b.proxy)
	if resp, _ := c.do(t, "CONNECT", "multi.test:"+port, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT multi.test = %s", resp.Status)
	}
	c.echo(t, "second address")
	resp, body := dialProxy(t, b.proxy).do(t, "CONNECT", "banned.test:"+port, "")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "banned.test resolves to 127.0.0.2, not 127.0.0.1 or ::1 (test policy)") {
		t.Fatalf("CONNECT banned.test = %s %q", resp.Status, body)
	}
	if n := echo.accepts.Load(); n != 1 {
		t.Fatalf("upstream accepts = %d, want 1", n)
	}
}

// Each request on a keep-alive connection is decided on its own.
func TestEgressKeepAlive(t *testing.T) {
	t.Parallel()
	up := startHTTP(t)
	port := strconv.Itoa(up.port)
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1", "denied.test": "127.0.0.1"})
	b := startBundle(t, baseConfig(res, "allowed.test:"+port))
	c := dialProxy(t, b.proxy)
	steps := []struct {
		target string
		status int
	}{
		{"http://allowed.test:" + port + "/one", 200},
		{"http://denied.test:" + port + "/two", 403},
		{"http://allowed.test:" + port + "/three", 200},
	}
	for _, s := range steps {
		resp, body := c.do(t, "GET", s.target, "")
		if resp.StatusCode != s.status || resp.Close {
			t.Fatalf("GET %s = %s (close %v) %q, want %d on a connection kept alive", s.target, resp.Status, resp.Close, body, s.status)
		}
	}
	if got := up.requests(); len(got) != 2 {
		t.Fatalf("upstream saw %q, want /one and /three only", got)
	}
	ds := b.log.decisions()
	if len(ds) != 3 || ds[0].Decision != "allow" || ds[1].Decision != "deny" || ds[1].Host != "denied.test" || ds[2].Decision != "allow" {
		t.Fatalf("decisions = %+v, want allow, deny denied.test, allow", ds)
	}
}

// The proxy serves nothing itself and never connects to itself.
func TestEgressNotAProxyRequest(t *testing.T) {
	t.Parallel()
	res := newResolver(map[string]string{"self.test": "127.0.0.1"})
	cfg := baseConfig(res, "self.test:*")
	cfg.AllowCIDRs = []string{"127.0.0.0/8"}
	b := startBundle(t, cfg)
	_, proxyPort, _ := net.SplitHostPort(b.proxy)
	tests := []struct {
		method, target string
		status         int
		short, body    string
	}{
		{"GET", "/", http.StatusBadRequest, deniedNotProxy, "not a proxy request"},
		{"GET", "/secret?token=hunter2", http.StatusBadRequest, deniedNotProxy, "point HTTP_PROXY and HTTPS_PROXY at http://" + b.proxy},
		{"GET", "http://" + b.proxy + "/status", http.StatusForbidden, deniedSelf, "is this egress proxy itself"},
		{"CONNECT", b.proxy, http.StatusForbidden, deniedSelf, "is this egress proxy itself"},
		{"CONNECT", "self.test:" + proxyPort, http.StatusForbidden, deniedBlocked, "self.test resolves to 127.0.0.1, the egress proxy itself"},
	}
	for _, tt := range tests {
		resp, body := dialProxy(t, b.proxy).do(t, tt.method, tt.target, "")
		if resp.StatusCode != tt.status || resp.Header.Get(DeniedHeader) != tt.short || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s = %s (%s) %q; want %d %s containing %q", tt.method, tt.target, resp.Status, resp.Header.Get(DeniedHeader), body, tt.status, tt.short, tt.body)
		}
	}
	if n := len(b.log.decisions()); n != len(tests) {
		t.Fatalf("%d decision lines, want %d", n, len(tests))
	}
	checkNoSecrets(t, b.log)
}

// An allowed target that cannot be reached is a 502 naming it and why.
func TestEgressBadGateway(t *testing.T) {
	t.Parallel()
	b := startBundle(t, baseConfig(newResolver(nil), "broken.test:*"))
	for _, tt := range []struct{ method, target, body string }{
		{"CONNECT", "broken.test:443", "bottle-apply egress proxy (bottle hello): CONNECT broken.test:443: cannot reach it: resolve broken.test: lookup broken.test: no such host (test resolver)"},
		{"GET", "http://broken.test/secret?token=hunter2", "GET broken.test:80: cannot reach it: resolve broken.test: lookup broken.test: no such host"},
	} {
		resp, body := dialProxy(t, b.proxy).do(t, tt.method, tt.target, "")
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(DeniedHeader) != "" || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s = %s %q, want 502 containing %q", tt.method, tt.target, resp.Status, body, tt.body)
		}
		if strings.Contains(body, "secret") {
			t.Errorf("the 502 body quotes the path: %q", body)
		}
	}
	b.log.find(t, "egress dial failed")
	checkNoSecrets(t, b.log)
}

func checkDecisions(t *testing.T, log *logBuffer, want []Decision) {
	t.Helper()
	got := log.decisions()
	if len(got) != len(want) {
		t.Fatalf("%d decision lines, want %d:\n%s", len(got), len(want), log)
	}
	for i := range got {
		g := got[i]
		if g.Time.IsZero() || g.Level != "info" || g.Bottle != "hello" || g.Message != MessageEgressDecision {
			t.Errorf("decision %d = %+v: time, level, bottle or message wrong", i, g)
		}
		g.Time, g.Level, g.Bottle, g.Message = time.Time{}, "", "", ""
		if g != want[i] {
			t.Errorf("decision %d = %+v, want %+v", i, g, want[i])
		}
	}
}

// checkNoSecrets: paths, queries, headers and bodies never reach the log.
func checkNoSecrets(t *testing.T, log *logBuffer) {
	t.Helper()
	for _, s := range []string{"secret", "hunter2", "token", "Bearer", "/path", "/one"} {
		if strings.Contains(log.String(), s) {
			t.Fatalf("the log holds %q:\n%s", s, log)
		}
	}
}

func BenchmarkEgressDecide(b *testing.B) {
	p, self := policyForTest(b)
	e := &egress{p: p, self: self}
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("CONNECT x.pkg.example.org:443 HTTP/1.1\r\nHost: x\r\n\r\n")))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if v := e.decide(r); !v.allowed() {
			b.Fatal(v.reason)
		}
	}
}

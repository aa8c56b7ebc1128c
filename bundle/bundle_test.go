package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{
			name: "every variable",
			env: map[string]string{
				"BOTTLE_NAME": "hello", "BOTTLE_DAEMONS": "egress, dns,",
				"BOTTLE_EGRESS_ALLOW": "api.example.com,*.pkg.example.org:443", "BOTTLE_ALLOW_CIDRS": "10.1.0.0/16, fd00::/8",
				"BOTTLE_LISTEN_IP": "10.1.2.2", "BOTTLE_PROXY_PORT": "3128", "BOTTLE_DNS_PORT": "5353",
				"BOTTLE_STATUS_ADDR": "127.0.0.1:9999", "BOTTLE_DNS_UPSTREAM": "127.0.0.11:53",
				"BOTTLE_HOST_ADDRS": "10.1.2.1, 10.213.0.17,",
			},
			want: Config{
				Bottle: "hello", Daemons: []string{"egress", "dns"},
				EgressAllow: []string{"api.example.com", "*.pkg.example.org:443"}, AllowCIDRs: []string{"10.1.0.0/16", "fd00::/8"},
				HostAddrs: []string{"10.1.2.1", "10.213.0.17"}, ListenIP: "10.1.2.2", ProxyPort: "3128", DNSPort: "5353",
				StatusAddr: "127.0.0.1:9999", DNSUpstream: "127.0.0.11:53",
			},
		},
		{
			name: "defaults",
			env:  map[string]string{"BOTTLE_NAME": "hello", "BOTTLE_DAEMONS": "egress", "BOTTLE_ALLOW_CIDRS": "", "BOTTLE_LISTEN_IP": "10.1.2.2"},
			want: Config{
				Bottle: "hello", Daemons: []string{"egress"}, ListenIP: "10.1.2.2",
				ProxyPort: "8888", DNSPort: "53", StatusAddr: "127.0.0.1:9901",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ConfigFromEnv(func(k string) string { return tt.env[k] })
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ConfigFromEnv = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDefaultStatusAddrUsesStatusPort(t *testing.T) {
	t.Parallel()
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(StatusPort)); DefaultStatusAddr != want {
		t.Fatalf("DefaultStatusAddr = %s, want %s", DefaultStatusAddr, want)
	}
}

func TestRunIdlesWithNoDaemons(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Bottle: "hello"}, &out) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned before ctx was done: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	dec := json.NewDecoder(&out)
	var first map[string]any
	if err := dec.Decode(&first); err != nil {
		t.Fatalf("first log line is not JSON: %v (%q)", err, out.String())
	}
	if first["message"] != "no daemons selected" || first["bottle"] != "hello" {
		t.Fatalf("first log line = %v", first)
	}
}

func TestRunRejectsUnknownDaemon(t *testing.T) {
	t.Parallel()
	err := Run(t.Context(), Config{Daemons: []string{"telnetd"}}, &bytes.Buffer{})
	if err == nil || err.Error() != `daemon "telnetd" is not available in this bundle build` {
		t.Fatalf("Run = %v", err)
	}
}

// Run refuses a bad configuration before it binds anything, and says why.
func TestRunConfigErrors(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = taken.Close() })
	noResolv := filepath.Join(t.TempDir(), "resolv.conf")
	// A directory where the routing table should be: it cannot be read.
	unreadable := t.TempDir()
	if err := os.Mkdir(filepath.Join(unreadable, "route"), 0o755); err != nil {
		t.Fatal(err)
	}
	ok := func() Config { return baseConfig(newResolver(nil)) }
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"missing listen IP", func(c *Config) { c.ListenIP = "" }, "BOTTLE_LISTEN_IP is not set"},
		{"listen on every address", func(c *Config) { c.ListenIP = "0.0.0.0" }, "never listen on every address"},
		{"listen IP is a name", func(c *Config) { c.ListenIP = "bundle" }, `BOTTLE_LISTEN_IP: "bundle" is not an IP address`},
		{"status on every address", func(c *Config) { c.StatusAddr = "0.0.0.0:9901" }, `BOTTLE_STATUS_ADDR: "0.0.0.0:9901" is not a loopback address`},
		{"status on the bottle network", func(c *Config) { c.StatusAddr = "10.1.2.2:9901" }, "is not a loopback address"},
		{"status by name", func(c *Config) { c.StatusAddr = "localhost:9901" }, "is not a loopback address"},
		{"bad CIDR", func(c *Config) { c.AllowCIDRs = []string{"10.0.0.0/33"} }, `BOTTLE_ALLOW_CIDRS: "10.0.0.0/33" is not a CIDR`},
		{"bad host address", func(c *Config) { c.HostAddrs = []string{"10.1.2.1", "gateway"} }, `BOTTLE_HOST_ADDRS: "gateway" is not an IP address`},
		{"unreadable routes", func(c *Config) { c.procNet = unreadable }, "read the bundle's routes"},
		{"bad rule", func(c *Config) { c.EgressAllow = []string{"example.com:"} }, "BOTTLE_EGRESS_ALLOW:"},
		{"bad proxy port", func(c *Config) { c.ProxyPort = "http" }, `BOTTLE_PROXY_PORT: "http" is not a port number`},
		{"bad dns port", func(c *Config) { c.DNSPort = "65536" }, `BOTTLE_DNS_PORT: "65536" is not a port number`},
		{"bad upstream", func(c *Config) { c.Daemons = []string{"dns"}; c.DNSUpstream = "dns.google" }, `BOTTLE_DNS_UPSTREAM: "dns.google" is not ip:port`},
		{"no resolv.conf", func(c *Config) { c.Daemons = []string{"dns"}; c.resolvConf = noResolv }, "BOTTLE_DNS_UPSTREAM is not set and " + noResolv},
		{"status port taken", func(c *Config) { c.StatusAddr = taken.Addr().String() }, "status: listen on " + taken.Addr().String()},
		{"proxy port taken", func(c *Config) { c.ProxyPort = strconv.Itoa(taken.Addr().(*net.TCPAddr).Port) }, "egress: listen on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok()
			tt.change(&cfg)
			var out logBuffer
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			err := Run(ctx, cfg, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(out.String(), `"ready"`) {
				t.Fatalf("Run logged ready before failing:\n%s", out.String())
			}
		})
	}
	// Every problem is reported at once.
	cfg := ok()
	cfg.ListenIP, cfg.StatusAddr = "", "0.0.0.0:1"
	err = Run(t.Context(), cfg, &logBuffer{})
	if err == nil || !strings.Contains(err.Error(), "BOTTLE_LISTEN_IP") || !strings.Contains(err.Error(), "BOTTLE_STATUS_ADDR") {
		t.Fatalf("Run = %v, want both problems", err)
	}
}

// A failed bind releases what was bound before it.
func TestRunReleasesListenersOnBindFailure(t *testing.T) {
	t.Parallel()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(free.Addr().(*net.TCPAddr).Port)
	_ = free.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := baseConfig(newResolver(nil))
	cfg.ProxyPort, cfg.StatusAddr = port, taken.Addr().String()
	if err := Run(t.Context(), cfg, &logBuffer{}); err == nil {
		t.Fatal("Run succeeded with the status port taken")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("the proxy port is still bound after Run failed: %v", err)
	}
	_ = ln.Close()
}

func TestDNSUpstream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	docker := write("docker", "# Generated by Docker Engine.\nnameserver 127.0.0.11\nsearch example.org\noptions ndots:0\n")
	v6 := write("v6", "nameserver ::1\n")
	none := write("none", "search example.org\n")
	tests := []struct {
		name, env, path, want, wantErr string
	}{
		{name: "env wins", env: "10.0.0.1:5353", path: docker, want: "10.0.0.1:5353"},
		{name: "env v6", env: "[fd00::53]:53", want: "[fd00::53]:53"},
		{name: "docker resolv.conf", path: docker, want: "127.0.0.11:53"},
		{name: "v6 resolv.conf", path: v6, want: "[::1]:53"},
		{name: "no nameserver", path: none, wantErr: "names no nameserver"},
		{name: "env without port", env: "10.0.0.1", wantErr: "is not ip:port"},
		{name: "env port 0", env: "10.0.0.1:0", wantErr: "is not ip:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := dnsUpstream(tt.env, tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("dnsUpstream = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("dnsUpstream = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	b, echo := startEgressAndDNS(t)

	c := dialProxy(t, b.proxy)
	if resp, _ := c.do(t, "CONNECT", "allowed.test:"+strconv.Itoa(echo.port), ""); resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	for range 2 {
		if resp, _ := dialProxy(t, b.proxy).do(t, "CONNECT", "denied.test:443", ""); resp.StatusCode != 403 {
			t.Fatalf("CONNECT denied.test = %s", resp.Status)
		}
	}

	st, err := QueryStatus(t.Context(), b.status)
	if err != nil {
		t.Fatalf("QueryStatus: %v", err)
	}
	want := Status{
		Bottle: "hello", Ready: true,
		Daemons:   []DaemonStatus{{Name: "egress", Listen: b.proxy}, {Name: "dns", Listen: b.dns}},
		Decisions: DecisionCounts{Allow: 1, Deny: 2},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("QueryStatus = %+v, want %+v", st, want)
	}
	if !strings.HasPrefix(b.proxy, "127.0.0.1:") || !strings.HasPrefix(b.dns, "127.0.0.1:") || !strings.HasPrefix(b.status, "127.0.0.1:") {
		t.Fatalf("listen addresses = %s %s %s, want 127.0.0.1", b.proxy, b.dns, b.status)
	}

	// The JSON field names are the contract.
	raw := httpGet(t, "http://"+b.status+"/status")
	for _, k := range []string{`"bottle":"hello"`, `"ready":true`, `"daemons":[{"name":"egress","listen":"` + b.proxy + `"}`, `"decisions":{"allow":1,"deny":2}`} {
		if !strings.Contains(raw, k) {
			t.Errorf("GET /status = %s, want it to contain %s", raw, k)
		}
	}

	// The proxy port is no status endpoint.
	if _, err := QueryStatus(t.Context(), b.proxy); err == nil {
		t.Fatalf("QueryStatus on the proxy port succeeded")
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := QueryStatus(t.Context(), b.status); err == nil {
		t.Fatalf("QueryStatus succeeded after Run returned")
	}
}

// On cancel, Run closes every connection, CONNECT tunnels included, and
// returns: nothing is left to hang. Not parallel: it counts the goroutines
// of the proxy and DNS libraries, and the parallel tests wait until it is
// done.
func TestRunShutdown(t *testing.T) {
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1"})
	cfg := baseConfig(res, "allowed.test:*")
	cfg.Daemons = []string{"egress", "dns"}
	cfg.DNSUpstream = "127.0.0.1:1" // never asked
	b := startBundle(t, cfg)
	if g := daemonGoroutines(); len(g) == 0 {
		t.Fatalf("no daemon goroutine found while serving: the leak check below sees nothing")
	}

	tunnel := dialProxy(t, b.proxy)
	if resp, _ := tunnel.do(t, "CONNECT", "allowed.test:"+strconv.Itoa(echo.port), ""); resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	tunnel.echo(t, "before shutdown")
	idle := dialProxy(t, b.proxy) // a connection with no request yet
	dnsTCP, err := net.Dial("tcp", b.dns)
	if err != nil {
		t.Fatal(err)
	}
	defer dnsTCP.Close()

	start := time.Now()
	if err := b.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Run took %s to stop", d)
	}
	if _, err := tunnel.r.ReadByte(); err == nil {
		t.Fatalf("the tunnel still reads after Run returned")
	}
	echo.waitEnded(t) // goproxy closed its side of the tunnel too
	if _, err := idle.r.ReadByte(); err == nil {
		t.Fatalf("the idle proxy connection still reads after Run returned")
	}
	_ = dnsTCP.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := dnsTCP.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the DNS TCP connection is still open after Run returned: %v", err)
	}
	for _, addr := range []string{b.proxy, b.status} {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			t.Fatalf("%s still accepts after Run returned", addr)
		}
	}
	for _, msg := range []string{"stopping", "stopped"} {
		b.log.find(t, msg)
	}
	var left []string
	for range 200 {
		if left = daemonGoroutines(); len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d goroutines of the daemons are left after Run returned:\n%s", len(left), strings.Join(left, "\n\n"))
}

// daemonGoroutines are the stacks of the goroutines in goproxy, miekg/dns,
// net/http's server and this package's non-test code.
func daemonGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, s := range []string{"elazarl/goproxy", "miekg/dns", "net/http.(*conn).serve", "net/http.(*Server).Serve",
			"bundle.Run", "bundle.(*egress)", "bundle.(*dnsDaemon)", "bundle.(*attempt)", "bundle.(*statusServer)"} {
			if strings.Contains(g, s) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

package probe

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestExpectAccepts(t *testing.T) {
	t.Parallel()
	gots := []string{"open", "refused", "unreachable", "timeout", "port-unreachable", "allowed", "denied",
		"resolves", "nxdomain", "servfail", "noanswer", "none", "present", "error", "",
		"no-tunnel", "handshake", "alert", "closed", "intercepted", "not-intercepted", "intercepted-invalid"}
	accepts := map[Expect][]string{
		ExpectOpen:        {"open"},
		ExpectClosed:      {"refused", "unreachable"},
		ExpectUnreachable: {"unreachable", "timeout"},
		ExpectAllowed:     {"allowed"},
		ExpectDenied:      {"denied", "no-tunnel"},
		ExpectResolves:    {"resolves"},
		ExpectFails: {"open", "refused", "unreachable", "timeout", "port-unreachable", "allowed", "denied",
			"nxdomain", "servfail", "noanswer", "none", "present", "no-tunnel", "handshake", "alert", "closed",
			"intercepted", "not-intercepted", "intercepted-invalid"},
		ExpectNone:           {"none"},
		ExpectRefused:        {"refused"},
		ExpectIntercepted:    {"intercepted"},
		ExpectNotIntercepted: {"not-intercepted", "no-tunnel", "timeout"},
		"bogus":              nil,
	}
	for e, ok := range accepts {
		for _, got := range gots {
			want := false
			for _, g := range ok {
				want = want || g == got
			}
			if e.Accepts(got) != want {
				t.Errorf("Expect(%q).Accepts(%q) = %v, want %v", e, got, !want, want)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	validCA := newAuthority(t).pem
	tests := []struct {
		name  string
		check Check
		err   string // substring; "" means valid
	}{
		{"tcp", Check{Kind: KindTCP, Addr: "10.0.0.2:9901", Expect: ExpectClosed}, ""},
		{"tcp v6", Check{Kind: KindTCP, Addr: "[fd00::1]:9", Expect: ExpectUnreachable}, ""},
		{"tcp by name", Check{Kind: KindTCP, Addr: "localhost:80", Expect: ExpectOpen}, "not an IP address and port"},
		{"tcp without port", Check{Kind: KindTCP, Addr: "10.0.0.2", Expect: ExpectOpen}, "not an IP address and port"},
		{"tcp expects denied", Check{Kind: KindTCP, Addr: "10.0.0.2:1", Expect: ExpectDenied}, "cannot expect"},
		{"unknown kind", Check{Kind: "udp", Addr: "10.0.0.2:1", Expect: ExpectOpen}, "kind \"udp\""},
		{"connect", Check{Kind: KindProxyConnect, Addr: "10.0.0.2:8888", Target: "a.example:443", Expect: ExpectDenied}, ""},
		{"connect without port", Check{Kind: KindProxyConnect, Addr: "10.0.0.2:8888", Target: "a.example", Expect: ExpectDenied}, "host:port"},
		{"http", Check{Kind: KindProxyHTTP, Addr: "10.0.0.2:8888", Target: "http://a.example/", Expect: ExpectAllowed}, ""},
		{"http relative", Check{Kind: KindProxyHTTP, Addr: "10.0.0.2:8888", Target: "/x", Expect: ExpectAllowed}, "absolute"},
		{"http ftp", Check{Kind: KindProxyHTTP, Addr: "10.0.0.2:8888", Target: "ftp://a.example/", Expect: ExpectAllowed}, "absolute"},
		{"dns", Check{Kind: KindDNS, Addr: "10.0.0.2:53", Target: "a.example", Expect: ExpectFails}, ""},
		{"dns system", Check{Kind: KindDNS, Target: "a.example", Expect: ExpectResolves}, ""},
		{"dns no name", Check{Kind: KindDNS, Addr: "10.0.0.2:53", Expect: ExpectFails}, "not a name"},
		{"dns open", Check{Kind: KindDNS, Addr: "10.0.0.2:53", Target: "a.example", Expect: ExpectOpen}, "cannot expect"},
		{"dns txt", Check{Kind: KindDNS, Addr: "10.0.0.2:53", Target: "a.example", QType: "TXT", Expect: ExpectRefused}, ""},
		{"dns bad qtype", Check{Kind: KindDNS, Addr: "10.0.0.2:53", Target: "a.example", QType: "txt", Expect: ExpectRefused}, "qtype \"txt\""},
		{"qtype on a tcp check", Check{Kind: KindTCP, Addr: "10.0.0.2:1", QType: "A", Expect: ExpectOpen}, "takes no sni, qtype or ca"},
		{"tls", Check{Kind: KindProxyTLS, Addr: "10.0.0.2:8888", Target: "a.example:443", SNI: "b.example", Expect: ExpectDenied}, ""},
		{"tls without sni", Check{Kind: KindProxyTLS, Addr: "10.0.0.2:8888", Target: "a.example:443", Expect: ExpectDenied}, "sni \"\""},
		{"tls without port", Check{Kind: KindProxyTLS, Addr: "10.0.0.2:8888", Target: "a.example", SNI: "b.example", Expect: ExpectDenied}, "host:port"},
		{"tls expects allowed", Check{Kind: KindProxyTLS, Addr: "10.0.0.2:8888", Target: "a.example:443", SNI: "b.example", Expect: ExpectAllowed}, "cannot expect"},
		{"sni on a connect", Check{Kind: KindProxyConnect, Addr: "10.0.0.2:8888", Target: "a.example:443", SNI: "b.example", Expect: ExpectDenied}, "takes no sni"},
		{"intercept", Check{Kind: KindProxyIntercept, Addr: "10.0.0.2:8888", Target: "a.example:443", CA: validCA, Expect: ExpectIntercepted}, ""},
		{"intercept none", Check{Kind: KindProxyIntercept, Addr: "10.0.0.2:8888", Target: "a.example:443", CA: validCA, Expect: ExpectNotIntercepted}, ""},
		{"intercept without a CA", Check{Kind: KindProxyIntercept, Addr: "10.0.0.2:8888", Target: "a.example:443", Expect: ExpectIntercepted}, "not a PEM CA certificate"},
		{"intercept an address", Check{Kind: KindProxyIntercept, Addr: "10.0.0.2:8888", Target: "192.0.2.1:443", CA: validCA, Expect: ExpectIntercepted}, "does not name a host"},
		{"intercept without port", Check{Kind: KindProxyIntercept, Addr: "10.0.0.2:8888", Target: "a.example", CA: validCA, Expect: ExpectIntercepted}, "host:port"},
		{"intercept expects denied", Check{Kind: KindProxyIntercept, Addr: "10.0.0.2:8888", Target: "a.example:443", CA: validCA, Expect: ExpectDenied}, "cannot expect"},
		{"intercept with sni", Check{Kind: KindProxyIntercept, Addr: "10.0.0.2:8888", Target: "a.example:443", SNI: "b.example", CA: validCA, Expect: ExpectIntercepted}, "takes no sni"},
		{"ca on a tls check", Check{Kind: KindProxyTLS, Addr: "10.0.0.2:8888", Target: "a.example:443", SNI: "b.example", CA: validCA, Expect: ExpectDenied}, "takes no sni, qtype or ca"},
		{"ipv6", Check{Kind: KindIPv6, Expect: ExpectNone}, ""},
		{"ipv6 present", Check{Kind: KindIPv6, Expect: "present"}, "cannot expect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.check.Validate()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Validate() = %v, want an error with %q", err, tt.err)
			}
		})
	}
}

// TestRunOrder runs checks that finish in reverse order and wants their
// results in input order, with no more than Parallel at once.
func TestRunOrder(t *testing.T) {
	t.Parallel()
	const n, parallel = 12, 4
	var running, peak atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		cur := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		_, port, _ := net.SplitHostPort(addr)
		i, _ := strconv.Atoi(port)
		time.Sleep(time.Duration(n-i) * 3 * time.Millisecond)
		if i%2 == 0 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errConnRefused}
		}
		c1, c2 := net.Pipe()
		c2.Close()
		return c1, nil
	}
	var checks []Check
	for i := range n {
		checks = append(checks, Check{Name: strconv.Itoa(i), Kind: KindTCP,
			Addr: "192.0.2.1:" + strconv.Itoa(i+1), Expect: ExpectOpen})
	}
	results := Run(t.Context(), checks, Options{Parallel: parallel, dial: dial})
	if len(results) != n {
		t.Fatalf("got %d results, want %d", len(results), n)
	}
	for i, r := range results {
		want := "open"
		if (i+1)%2 == 0 {
			want = "refused"
		}
		if r.Check != checks[i] || r.Got != want {
			t.Errorf("result %d = %+v, want check %+v with got %s", i, r, checks[i], want)
		}
	}
	if p := peak.Load(); p > parallel || p < 2 {
		t.Errorf("%d checks ran at once, want 2 to %d", p, parallel)
	}
}

var (
	errConnRefused  = os.NewSyscallError("connect", syscall.ECONNREFUSED)
	errHostUnreach  = os.NewSyscallError("connect", syscall.EHOSTUNREACH)
	errNetUnreach   = os.NewSyscallError("connect", syscall.ENETUNREACH)
	errAddrNotAvail = os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)
)

// TestRunCutShort wants checks that a done context cuts short to fail,
// whatever they expect: a test that did not run never passes.
func TestRunCutShort(t *testing.T) {
	t.Parallel()
	checks := []Check{
		{Kind: KindTCP, Addr: "192.0.2.1:9", Expect: ExpectUnreachable},
		{Kind: KindTCP, Addr: "192.0.2.1:9", Expect: ExpectClosed},
		{Kind: KindTCP, Addr: "192.0.2.1:9", Expect: ExpectUnreachable},
	}
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for i, r := range Run(ctx, checks, Options{dial: blackhole}) {
			if r.OK || r.Got != gotError || !strings.Contains(r.Detail, "not run") {
				t.Errorf("result %d = %+v, want a failed error, not run", i, r)
			}
		}
	})
	t.Run("total", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		rs := Run(t.Context(), checks, Options{dial: blackhole, ConnectTimeout: 10 * time.Second, Silence: 10 * time.Second,
			Total: 100 * time.Millisecond, Parallel: 1})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run took %s, want about the 100ms total", d)
		}
		for i, r := range rs {
			if r.OK || r.Got != gotError {
				t.Errorf("result %d = %+v, want a failed error", i, r)
			}
		}
	})
	t.Run("while waiting", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		var once sync.Once
		opt := Options{dial: blackhole, ConnectTimeout: 10 * time.Second, Silence: 10 * time.Second,
			beforeCheck: func(int) { once.Do(func() { time.AfterFunc(50*time.Millisecond, cancel) }) }}
		for i, r := range Run(ctx, checks, opt) {
			if r.OK || r.Got != gotError {
				t.Errorf("result %d = %+v, want a failed error", i, r)
			}
		}
	})
}

func TestRunInvalid(t *testing.T) {
	t.Parallel()
	rs := Run(t.Context(), []Check{{Kind: KindTCP, Addr: "localhost:1", Expect: ExpectClosed}}, Options{
		dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("must not dial")
		}})
	if rs[0].OK || rs[0].Got != gotError || !strings.Contains(rs[0].Detail, "invalid check") {
		t.Fatalf("result = %+v, want a failed invalid check", rs[0])
	}
}

func TestUnproven(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		r    Result
		want bool
	}{
		{Result{Got: gotNoTunnel, OK: true}, true},
		{Result{Got: gotNoTunnel}, false},
		{Result{Got: "denied", OK: true}, false},
		{Result{Check: Check{Kind: KindProxyIntercept}, Got: gotTimeout, OK: true}, true},
		{Result{Check: Check{Kind: KindProxyIntercept}, Got: gotTimeout}, false},
		{Result{Check: Check{Kind: KindProxyIntercept}, Got: "not-intercepted", OK: true}, false},
		{Result{Check: Check{Kind: KindDNS}, Got: gotTimeout, OK: true}, false},
	} {
		if got := tt.r.Unproven(); got != tt.want {
			t.Errorf("%+v.Unproven() = %v, want %v", tt.r, got, tt.want)
		}
	}
}

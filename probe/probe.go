// Package probe is the network self-test that runs inside a bottle's agent.
//
// The self-test copies the bottle-bundle build for the agent's platform
// into the agent and runs its probe subcommand, which calls Main: a list of
// Checks comes in as JSON on stdin, and a list of Results goes out as JSON
// on stdout. Each check says
// what it probes (Name), what a failure means (Hole), and which outcome is
// the safe one (Expect). Standard builds the list for one bottle.
//
// The probe sends traffic only to the addresses in its checks: every Addr
// is an IP literal (or, for DNS, empty: the first nameserver of
// /etc/resolv.conf), and names in a Target or an SNI are only ever sent to
// the proxy or DNS server at Addr, never resolved by the probe itself.
package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Kind is what a check does.
type Kind string

const (
	// KindTCP connects to Addr.
	KindTCP Kind = "tcp"
	// KindProxyConnect asks the proxy at Addr to CONNECT to Target
	// (host:port) and, if it does, sends GET / through the tunnel.
	KindProxyConnect Kind = "proxy-connect"
	// KindProxyHTTP sends GET Target (an absolute URL) to the proxy at Addr.
	KindProxyHTTP Kind = "proxy-http"
	// KindProxyTLS asks the proxy at Addr to CONNECT to Target (host:port)
	// and, if it does, sends a TLS ClientHello for SNI through the tunnel:
	// domain fronting, when SNI is not Target's host.
	KindProxyTLS Kind = "proxy-tls"
	// KindDNS sends one query of type QType (A by default) for Target to
	// the server at Addr over UDP.
	KindDNS Kind = "dns"
	// KindIPv6 looks for IPv6 addresses and routes in the agent.
	KindIPv6 Kind = "ipv6"
	// KindProxyIntercept asks the proxy at Addr to CONNECT to Target
	// (host:port) and, if it does, makes a TLS handshake for Target's host
	// through the tunnel, which tells whether the bundle terminated it
	// with a certificate of the bottle's CA (CA): the bundle does so for
	// the hosts it adds a credential to, and for no other. It sends no
	// request: the handshake is all it needs, and no credential is ever
	// used by the self-test.
	KindProxyIntercept Kind = "proxy-intercept"
)

// Expect is the outcome a check wants.
type Expect string

const (
	// ExpectOpen: the TCP connection is accepted.
	ExpectOpen Expect = "open"
	// ExpectClosed: the TCP connection fails, refused or unreachable.
	ExpectClosed Expect = "closed"
	// ExpectUnreachable: nothing answers, not even with a TCP reset, an
	// ICMP port unreachable or a DNS error. A peer that refuses has
	// answered, which is what the check is about.
	ExpectUnreachable Expect = "unreachable"
	// ExpectAllowed: the proxy lets the request through and it succeeds.
	ExpectAllowed Expect = "allowed"
	// ExpectDenied: the proxy answers 403; for proxy-tls, the proxy
	// answers the ClientHello with a TLS alert access_denied of its own,
	// or opens no tunnel at all.
	ExpectDenied Expect = "denied"
	// ExpectResolves: the DNS server answers with a record of the type
	// asked (A by default).
	ExpectResolves Expect = "resolves"
	// ExpectFails: the DNS query gets no such record, whatever the reason.
	ExpectFails Expect = "fails"
	// ExpectRefused: the DNS server answers REFUSED: a policy decision,
	// where NXDOMAIN would only say that some upstream knows no such name.
	ExpectRefused Expect = "refused"
	// ExpectNone: the agent has no IPv6 (no address but ::1, no route).
	ExpectNone Expect = "none"
	// ExpectIntercepted: the handshake completes with a certificate for
	// the host that chains to the bottle's CA, as the agent's clients
	// would check it.
	ExpectIntercepted Expect = "intercepted"
	// ExpectNotIntercepted: no certificate of the bottle's CA comes back:
	// another certificate (the upstream's), or the tunnel fails before any
	// certificate (a denied CONNECT, an alert, a close, no answer in time),
	// which says the bundle did not answer the ClientHello itself.
	ExpectNotIntercepted Expect = "not-intercepted"
)

// The outcomes a check may report in Result.Got besides the Expect values
// of the same name (open, unreachable, allowed, denied, resolves, none).
const (
	gotRefused         = "refused"          // tcp: RST; dns: rcode REFUSED
	gotPortUnreachable = "port-unreachable" // dns: ICMP port unreachable, the peer's kernel answered
	gotTimeout         = "timeout"          // dns: no answer in time
	gotNXDomain        = "nxdomain"         // dns
	gotNoAnswer        = "noanswer"         // dns: NOERROR without a record of the type asked
	gotPresent         = "present"          // ipv6
	gotNoTunnel        = "no-tunnel"        // proxy-tls: the proxy answered the CONNECT with an error, and dialled nothing
	gotHandshake       = "handshake"        // proxy-tls: a server answered the ClientHello
	gotAlert           = "alert"            // proxy-tls: a TLS alert that is not the proxy's
	gotClosed          = "closed"           // proxy-tls: the tunnel closed with no alert: the proxy dialled
	gotError           = "error"            // the check could not run or got something unexpected
	// proxy-intercept: a certificate of the bottle's CA (or of one it
	// signed) that the agent would refuse (wrong name, outside the CA's
	// name constraints, expired), or a handshake that failed after it:
	// the bundle intercepted, but not in a way either expectation wants.
	gotInterceptedInvalid = "intercepted-invalid"
)

// expects lists the outcomes each kind may expect.
var expects = map[Kind][]Expect{
	KindTCP:            {ExpectOpen, ExpectClosed, ExpectUnreachable},
	KindProxyConnect:   {ExpectAllowed, ExpectDenied},
	KindProxyHTTP:      {ExpectAllowed, ExpectDenied},
	KindProxyTLS:       {ExpectDenied},
	KindDNS:            {ExpectResolves, ExpectFails, ExpectRefused, ExpectUnreachable},
	KindIPv6:           {ExpectNone},
	KindProxyIntercept: {ExpectIntercepted, ExpectNotIntercepted},
}

// Check is one probe and the outcome it wants.
type Check struct {
	// Name says what is probed, for humans: "the host through the
	// internal network's gateway 10.213.4.1:9".
	Name string `json:"name"`
	// Hole says what a failure means: "the agent can reach the host".
	Hole string `json:"hole"`
	Kind Kind   `json:"kind"`
	// Addr is an IP literal with a port. tcp: the peer; proxy-*: the
	// proxy; dns: the server ("" is the first nameserver of
	// /etc/resolv.conf); ipv6: unused.
	Addr string `json:"addr,omitempty"`
	// Target is, for proxy-connect and proxy-tls, the host:port to CONNECT
	// to; for proxy-http, the absolute URL to GET; for dns, the name to
	// look up.
	Target string `json:"target,omitempty"`
	// SNI is, for proxy-tls, the server name of the ClientHello.
	SNI string `json:"sni,omitempty"`
	// QType is, for dns, the query type ("TXT"); "" is A.
	QType string `json:"qtype,omitempty"`
	// CA is, for proxy-intercept, the bottle's CA certificate (PEM): the
	// one root the peer's certificate is verified against. It comes with
	// the check rather than from the agent's copy (bottle.AgentCAFile),
	// which the agent may have changed, and which an agent made before
	// the bottle had credentials does not hold. A string, so that a Check
	// stays comparable.
	CA     string `json:"ca,omitempty"`
	Expect Expect `json:"expect"`
}

// Result is a check and what it got.
type Result struct {
	Check
	// Got is the outcome: open, refused, unreachable (tcp); allowed,
	// denied, unreachable, error (proxy-*); no-tunnel, handshake, alert,
	// closed, timeout (proxy-tls); intercepted, intercepted-invalid,
	// not-intercepted, no-tunnel, timeout (proxy-intercept); resolves,
	// refused, nxdomain, servfail (or another lower-case rcode), noanswer,
	// timeout, port-unreachable, unreachable (dns); none, present (ipv6).
	// Any kind reports error when the check could not run.
	Got string `json:"got"`
	// OK reports whether Got is what Expect wants.
	OK bool `json:"ok"`
	// Detail is for humans: the error, the proxy's reason, the addresses.
	Detail string `json:"detail,omitempty"`
	Millis int64  `json:"millis"`
}

// Unproven reports a result that passed without reaching what it checks:
// a proxy-tls or proxy-intercept check whose CONNECT the proxy did not
// open (the allowed name did not resolve, say), so no ClientHello was
// sent, or a proxy-intercept check that got no certificate in time. It
// is safe, not proven.
func (r Result) Unproven() bool {
	return r.OK && (r.Got == gotNoTunnel || r.Kind == KindProxyIntercept && r.Got == gotTimeout)
}

// Accepts reports whether the outcome got satisfies e.
func (e Expect) Accepts(got string) bool {
	switch e {
	case ExpectClosed:
		return got == gotRefused || got == string(ExpectUnreachable)
	case ExpectUnreachable:
		return got == string(ExpectUnreachable) || got == gotTimeout
	case ExpectFails:
		return got != "" && got != string(ExpectResolves) && got != gotError
	case ExpectRefused:
		return got == gotRefused
	case ExpectDenied:
		// No tunnel means nothing to front: the proxy dialled nothing.
		return got == string(e) || got == gotNoTunnel
	case ExpectNotIntercepted:
		// The bundle answers an intercepted ClientHello itself, at once:
		// no tunnel, or no answer in time, is no interception.
		return got == string(e) || got == gotNoTunnel || got == gotTimeout
	case ExpectOpen, ExpectAllowed, ExpectResolves, ExpectNone, ExpectIntercepted:
		return got == string(e)
	}
	return false
}

// Validate reports what is wrong with a check, so that a bad list is
// rejected before anything is sent.
func (c Check) Validate() error {
	allowed, ok := expects[c.Kind]
	if !ok {
		return fmt.Errorf("kind %q is not one of tcp, proxy-connect, proxy-http, proxy-tls, proxy-intercept, dns, ipv6", c.Kind)
	}
	if !slices.Contains(allowed, c.Expect) {
		return fmt.Errorf("a %s check cannot expect %q; it expects one of %v", c.Kind, c.Expect, allowed)
	}
	if c.Kind == KindIPv6 || c.Kind == KindDNS && c.Addr == "" {
		// No address, or the system resolver's.
	} else if _, err := netip.ParseAddrPort(c.Addr); err != nil {
		return fmt.Errorf("addr %q is not an IP address and port (such as 10.0.0.2:8888 or [fd00::2]:53)", c.Addr)
	}
	if c.SNI != "" && c.Kind != KindProxyTLS || c.QType != "" && c.Kind != KindDNS || c.CA != "" && c.Kind != KindProxyIntercept {
		return fmt.Errorf("a %s check takes no sni, qtype or ca", c.Kind)
	}
	switch c.Kind {
	case KindProxyConnect, KindProxyTLS:
		if _, port, err := net.SplitHostPort(c.Target); err != nil || port == "" {
			return fmt.Errorf("target %q is not a host:port to CONNECT to", c.Target)
		}
		if _, ok := dns.IsDomainName(c.SNI); c.Kind == KindProxyTLS && (!ok || c.SNI == "") {
			return fmt.Errorf("sni %q is not a server name", c.SNI)
		}
	case KindProxyIntercept:
		host, port, err := net.SplitHostPort(c.Target)
		if err != nil || port == "" {
			return fmt.Errorf("target %q is not a host:port to CONNECT to", c.Target)
		}
		if _, ok := dns.IsDomainName(host); !ok || host == "" || isIPLiteral(host) {
			return fmt.Errorf("target %q does not name a host; a certificate is checked for a name", c.Target)
		}
		if _, err := parseCA(c.CA); err != nil {
			return err
		}
	case KindProxyHTTP:
		u, err := url.Parse(c.Target)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("target %q is not an absolute http:// or https:// URL", c.Target)
		}
	case KindDNS:
		if _, ok := dns.IsDomainName(c.Target); !ok || c.Target == "" {
			return fmt.Errorf("target %q is not a name to look up", c.Target)
		}
		if _, ok := dns.StringToType[c.QType]; c.QType != "" && !ok {
			return fmt.Errorf("qtype %q is not a DNS query type (such as A, AAAA, TXT)", c.QType)
		}
	}
	return nil
}

// Options tunes Run. Zero fields take the defaults.
type Options struct {
	// ConnectTimeout bounds a TCP connect, to a peer or to the proxy
	// (default 700ms: peers sit on the same host's bridge, and a live one
	// answers in well under 10ms).
	ConnectTimeout time.Duration
	// DNSTimeout bounds a DNS query (default 1.5s).
	DNSTimeout time.Duration
	// Silence bounds the TCP connect or DNS query of a check that expects
	// unreachable: how long nothing must answer (default 100ms). Every
	// peer the checks expect silence from is on the agent's own host, its
	// gateways and the host's addresses: a live one answers a SYN or a
	// query in well under 50ms, and an ICMP error comes back at once. A
	// check that expects an answer waits ConnectTimeout or DNSTimeout,
	// which only a failing check ever reaches.
	Silence time.Duration
	// ProxyTimeout bounds a proxy check's exchange with the proxy, from
	// the connect on (default 5s).
	ProxyTimeout time.Duration
	// InterceptTimeout bounds a proxy-intercept check that expects no
	// interception, from the connect on (default 300ms). The bundle
	// answers a ClientHello it intercepts itself, at once; one it does not
	// goes to the real upstream, which may take longer: past the bound the
	// check passes as unproven rather than hold up the self-test. A check
	// that expects interception waits ProxyTimeout, which only a failing
	// one (or a bundle slow to issue its certificate) ever reaches.
	InterceptTimeout time.Duration
	// Total bounds the whole run (default 30s). Checks that have not
	// finished by then report error.
	Total time.Duration
	// Parallel is how many checks run at once (default 16).
	Parallel int

	// Seams for tests; nil means the real thing.
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	resolver    func() (string, error)
	ifaceAddrs  func() ([]net.Addr, error)
	beforeCheck func(i int)
}

// The defaults of Options.
const (
	DefaultConnectTimeout   = 700 * time.Millisecond
	DefaultDNSTimeout       = 1500 * time.Millisecond
	DefaultSilence          = 100 * time.Millisecond
	DefaultProxyTimeout     = 5 * time.Second
	DefaultInterceptTimeout = 300 * time.Millisecond
	DefaultTotal            = 30 * time.Second
	DefaultParallel         = 16
)

func (o Options) withDefaults() Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.DNSTimeout <= 0 {
		o.DNSTimeout = DefaultDNSTimeout
	}
	if o.Silence <= 0 {
		o.Silence = DefaultSilence
	}
	if o.ProxyTimeout <= 0 {
		o.ProxyTimeout = DefaultProxyTimeout
	}
	if o.InterceptTimeout <= 0 {
		o.InterceptTimeout = DefaultInterceptTimeout
	}
	if o.Total <= 0 {
		o.Total = DefaultTotal
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.dial == nil {
		var d net.Dialer
		o.dial = d.DialContext
	}
	if o.resolver == nil {
		o.resolver = systemResolver
	}
	if o.ifaceAddrs == nil {
		o.ifaceAddrs = net.InterfaceAddrs
	}
	return o
}

// Run runs the checks, at most opt.Parallel at once, and returns their
// results in the order of checks. A check that is invalid, or that ctx or
// opt.Total cuts short, reports error and is not OK: a test that did not
// run never passes.
func Run(ctx context.Context, checks []Check, opt Options) []Result {
	opt = opt.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opt.Total)
	defer cancel()

	results := make([]Result, len(checks))
	sem := make(chan struct{}, opt.Parallel)
	var wg sync.WaitGroup
	for i, c := range checks {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = finish(c, gotError, "not run: "+ctx.Err().Error(), time.Now())
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if opt.beforeCheck != nil {
				opt.beforeCheck(i)
			}
			results[i] = runOne(ctx, c, opt)
		})
	}
	wg.Wait()
	return results
}

// runOne runs one check.
func runOne(ctx context.Context, c Check, opt Options) Result {
	start := time.Now()
	if err := c.Validate(); err != nil {
		return finish(c, gotError, "invalid check: "+err.Error(), start)
	}
	if err := ctx.Err(); err != nil {
		return finish(c, gotError, "not run: "+err.Error(), start)
	}
	var got, detail string
	switch c.Kind {
	case KindTCP:
		got, detail = checkTCP(ctx, c, opt)
	case KindProxyConnect:
		got, detail = viaProxy(ctx, c, opt, proxyConnect)
	case KindProxyHTTP:
		got, detail = viaProxy(ctx, c, opt, proxyGet)
	case KindProxyTLS:
		got, detail = viaProxy(ctx, c, opt, proxyTLS)
	case KindProxyIntercept:
		got, detail = checkIntercept(ctx, c, opt)
	case KindDNS:
		got, detail = checkDNS(ctx, c, opt)
	case KindIPv6:
		got, detail = checkIPv6(ctx, opt)
	}
	if err := ctx.Err(); err != nil && ExpectUnreachable.Accepts(got) {
		// The run was cut short while the check waited: the silence may
		// be ours, not the peer's. Whatever counts as silence must not
		// pass then, so the list is the one ExpectUnreachable accepts.
		got, detail = gotError, "interrupted: "+err.Error()+" ("+detail+")"
	}
	return finish(c, got, detail, start)
}

// bound is how long c waits for an answer: d, or opt.Silence when c
// expects none.
func (o Options) bound(c Check, d time.Duration) time.Duration {
	if c.Expect == ExpectUnreachable {
		return o.Silence
	}
	return d
}

func finish(c Check, got, detail string, start time.Time) Result {
	return Result{Check: c, Got: got, OK: c.Expect.Accepts(got), Detail: detail,
		Millis: time.Since(start).Milliseconds()}
}

package bundle

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeUpstream is a loopback DNS server (UDP and TCP, one port) that
// answers every A and AAAA query with a documentation address.
type fakeUpstream struct {
	addr    string
	queries atomic.Int32
}

func startUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	u.addr = serveDNS(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP("192.0.2.7")})
		case dns.TypeAAAA:
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::7")})
		}
		_ = w.WriteMsg(m)
	}))
	return u
}

// serveDNS serves h on one loopback port, UDP and TCP, until the test
// ends, and returns its address.
func serveDNS(t *testing.T, h dns.Handler) string {
	t.Helper()
	pc, ln, err := listenUDPAndTCP(netip.MustParseAddr("127.0.0.1"), 0)
	if err != nil {
		t.Fatalf("fake upstream: %v", err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return ln.Addr().String()
}

func TestDNS(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := baseConfig(newResolver(nil), "allowed.test", "*.wild.test:443")
	cfg.Daemons, cfg.DNSUpstream = []string{"dns"}, up.addr
	b := startBundle(t, cfg)
	if b.proxy != "" || b.dns == "" {
		t.Fatalf("daemons: egress %q, dns %q; want dns only", b.proxy, b.dns)
	}
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer string // the answer's address, when forwarded
		host   string
		rule   string
		reason string
	}{
		{"allowed.test.", dns.TypeA, dns.RcodeSuccess, "192.0.2.7", "allowed.test", "allowed.test", ""},
		{"ALLOWED.Test.", dns.TypeAAAA, dns.RcodeSuccess, "2001:db8::7", "allowed.test", "allowed.test", ""},
		{"a.wild.test.", dns.TypeA, dns.RcodeSuccess, "192.0.2.7", "a.wild.test", "*.wild.test:443", ""},
		{"denied.test.", dns.TypeA, dns.RcodeRefused, "", "denied.test", "", "no rule in spec.bundle.egress.allow covers denied.test"},
		{"wild.test.", dns.TypeA, dns.RcodeRefused, "", "wild.test", "", "covers wild.test"},
		{"allowed.test.evil.test.", dns.TypeA, dns.RcodeRefused, "", "allowed.test.evil.test", "", "covers"},
		{"1.0.0.127.in-addr.arpa.", dns.TypePTR, dns.RcodeRefused, "", "1.0.0.127.in-addr.arpa", "", "covers"},
	}
	var want []Decision
	forwarded := 0
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		for _, tt := range tests {
			q := new(dns.Msg).SetQuestion(tt.name, tt.qtype)
			q.Id = 4242
			resp, _, err := c.ExchangeContext(t.Context(), q, b.dns)
			if err != nil {
				t.Fatalf("%s %s: %v", network, tt.name, err)
			}
			if resp.Id != 4242 || resp.Rcode != tt.rcode {
				t.Errorf("%s %s %s = id %d %s, want id 4242 %s", network, tt.name, dns.TypeToString[tt.qtype],
					resp.Id, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			var got string
			if len(resp.Answer) == 1 {
				switch rr := resp.Answer[0].(type) {
				case *dns.A:
					got = rr.A.String()
				case *dns.AAAA:
					got = rr.AAAA.String()
				}
			}
			if got != tt.answer || (tt.answer == "" && len(resp.Answer) != 0) {
				t.Errorf("%s %s answer = %v, want %q", network, tt.name, resp.Answer, tt.answer)
			}
			if tt.answer != "" {
				forwarded++
			}
			d := Decision{Daemon: "dns", Decision: "allow", Host: tt.host, QType: dns.TypeToString[tt.qtype], Rule: tt.rule}
			if tt.reason != "" {
				d.Decision, d.Reason = "deny", tt.reason
			}
			want = append(want, d)
		}
	}
	if n := int(up.queries.Load()); n != forwarded {
		t.Fatalf("the upstream got %d queries, want %d (the allowed ones only)", n, forwarded)
	}
	got := b.log.decisions()
	if len(got) != len(want) {
		t.Fatalf("%d decision lines, want %d:\n%s", len(got), len(want), b.log)
	}
	for i, g := range got {
		if g.Message != MessageDNSDecision || g.Bottle != "hello" || g.Port != 0 || g.Method != "" {
			t.Errorf("decision %d = %+v", i, g)
		}
		w := want[i]
		if g.Daemon != w.Daemon || g.Decision != w.Decision || g.Host != w.Host || g.QType != w.QType || g.Rule != w.Rule ||
			!strings.Contains(g.Reason, w.Reason) || (w.Reason == "") != (g.Reason == "") {
			t.Errorf("decision %d = %+v, want %+v", i, g, w)
		}
	}
}

// Queries the daemon does not answer at all still get an answer, and a
// decision line.
func TestDNSOddQueries(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := baseConfig(newResolver(nil), "allowed.test")
	cfg.Daemons, cfg.DNSUpstream = []string{"dns"}, up.addr
	b := startBundle(t, cfg)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}

	chaos := new(dns.Msg).SetQuestion("allowed.test.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	notify := new(dns.Msg).SetNotify("allowed.test.")
	update := new(dns.Msg).SetUpdate("allowed.test.")
	empty := new(dns.Msg)
	empty.Id = dns.Id()
	for _, tt := range []struct {
		name  string
		m     *dns.Msg
		rcode int
	}{
		{"chaos class", chaos, dns.RcodeRefused},
		{"notify", notify, dns.RcodeNotImplemented},
		// miekg/dns answers these before the handler: no decision.
		{"update", update, dns.RcodeNotImplemented},
		{"no question", empty, dns.RcodeFormatError},
	} {
		resp, _, err := c.ExchangeContext(t.Context(), tt.m, b.dns)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if resp.Rcode != tt.rcode {
			t.Errorf("%s = %s, want %s", tt.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Fatalf("the upstream got %d queries, want none", n)
	}
	ds := b.log.decisions()
	if len(ds) != 2 || !strings.Contains(ds[0].Reason, "class CH") || !strings.Contains(ds[1].Reason, "opcode NOTIFY") {
		t.Fatalf("decisions = %+v, want the chaos class and the notify refused:\n%s", ds, b.log)
	}
	for _, d := range ds {
		if d.Decision != "deny" || d.Reason == "" {
			t.Errorf("decision = %+v, want a denial with a reason", d)
		}
	}
}

// Names that are not host names are refused before the rules: an escaped
// dot must not split a label into two that a wildcard would match.
func TestDNSBadNames(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := baseConfig(newResolver(nil), "*.example.com")
	cfg.Daemons, cfg.DNSUpstream = []string{"dns"}, up.addr
	b := startBundle(t, cfg)
	tests := []struct {
		name, host, reason string
	}{
		{`x.attacker\.example.com.`, `x.attacker?.example.com`, "a label holds an escaped character"},
		{`x\.example.com.`, `x?.example.com`, "a label holds an escaped character"},
		{`a\032b.example.com.`, `a? b.example.com`, "a label holds an escaped character"},
		{`a\000.example.com.`, `a?000.example.com`, "a label holds an escaped character"},
		{`*.example.com.`, `*.example.com`, `it holds '*'`},
		{`-x.example.com.`, `-x.example.com`, "starts or ends with '-'"},
		{`x/y.example.com.`, `x/y.example.com`, `it holds '/'`},
		{`.`, ``, "names no host"},
	}
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		for _, tt := range tests {
			q := new(dns.Msg).SetQuestion(tt.name, dns.TypeA)
			resp, _, err := c.ExchangeContext(t.Context(), q, b.dns)
			if err != nil {
				t.Fatalf("%s %s: %v", network, tt.name, err)
			}
			if resp.Rcode != dns.RcodeRefused {
				t.Errorf("%s %s = %s, want REFUSED", network, tt.name, dns.RcodeToString[resp.Rcode])
			}
		}
		// A real name under the wildcard still goes through.
		resp, _, err := c.ExchangeContext(t.Context(), new(dns.Msg).SetQuestion("x_y.Attacker.example.com.", dns.TypeA), b.dns)
		if err != nil || resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s x_y.attacker.example.com = %v, %v; want an answer", network, resp, err)
		}
	}
	if n := up.queries.Load(); n != 2 {
		t.Fatalf("the upstream got %d queries, want 2 (the good name's)", n)
	}
	ds := b.log.decisions()
	if len(ds) != 2*(len(tests)+1) {
		t.Fatalf("%d decision lines, want %d:\n%s", len(ds), 2*(len(tests)+1), b.log)
	}
	for i, tt := range tests {
		d := ds[i]
		if d.Decision != "deny" || d.Host != tt.host || !strings.Contains(d.Reason, tt.reason) {
			t.Errorf("decision for %s = %+v, want deny %q with a reason containing %q", tt.name, d, tt.host, tt.reason)
		}
	}
	if d := ds[len(tests)]; d.Decision != "allow" || d.Host != "x_y.attacker.example.com" || d.Rule != "*.example.com" {
		t.Errorf("decision = %+v, want x_y.attacker.example.com allowed by *.example.com", d)
	}
}

// At most dnsInFlight queries are answered at once; the rest get SERVFAIL
// at once, without a decision line, and one warning a second.
func TestDNSInFlightLimit(t *testing.T) {
	t.Parallel()
	// A slow upstream: it holds each query until released.
	got, release := make(chan struct{}, 8), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	slow := serveDNS(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		got <- struct{}{}
		<-release
		m := new(dns.Msg).SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.7")})
		_ = w.WriteMsg(m)
	}))

	cfg := baseConfig(newResolver(nil), "allowed.test")
	cfg.Daemons, cfg.DNSUpstream, cfg.dnsInFlight = []string{"dns"}, slow, 1
	b := startBundle(t, cfg)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	first := make(chan *dns.Msg, 1)
	go func() {
		resp, _, _ := c.ExchangeContext(t.Context(), new(dns.Msg).SetQuestion("allowed.test.", dns.TypeA), b.dns)
		first <- resp
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the first query did not reach the upstream")
	}
	for i := range 3 {
		resp, _, err := c.ExchangeContext(t.Context(), new(dns.Msg).SetQuestion("allowed.test.", dns.TypeA), b.dns)
		if err != nil || resp.Rcode != dns.RcodeServerFailure {
			t.Fatalf("query %d over the limit = %v, %v; want SERVFAIL", i, resp, err)
		}
	}
	free()
	if resp := <-first; resp == nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("the first query = %v, want its answer", resp)
	}
	// The slot is free again.
	if resp, _, err := c.ExchangeContext(t.Context(), new(dns.Msg).SetQuestion("allowed.test.", dns.TypeA), b.dns); err != nil || resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("a query after the first = %v, %v; want an answer", resp, err)
	}
	if n := len(b.log.decisions()); n != 2 {
		t.Fatalf("%d decision lines, want 2 (the queries answered):\n%s", n, b.log)
	}
	w := b.log.find(t, "dns: too many queries in flight; answered SERVFAIL")
	if w["level"] != "warn" || w["limit"] != float64(1) || w["turned_away"] != float64(1) {
		t.Fatalf("warning = %v", w)
	}
	if n := strings.Count(b.log.String(), "too many queries in flight"); n != 1 {
		t.Fatalf("%d warnings within a second, want 1:\n%s", n, b.log)
	}
}

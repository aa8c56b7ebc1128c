package bundle

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bottle-apply/bottle-apply/spec"
)

// recordingUpstream is a loopback DNS server that answers every query with
// success (an address for A and AAAA, an HTTPS or SVCB record with an ech
// parameter for those) and records each question it was asked.
type recordingUpstream struct {
	addr  string
	mu    sync.Mutex
	asked []string // "name TYPE"
}

func startRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.addr = serveDNS(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		u.mu.Lock()
		u.asked = append(u.asked, spec.NormalizeHost(q.Name)+" "+dns.Type(q.Qtype).String())
		u.mu.Unlock()
		m := new(dns.Msg).SetReply(r)
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
		svcb := dns.SVCB{Hdr: hdr, Priority: 1, Target: ".", Value: []dns.SVCBKeyValue{
			&dns.SVCBMandatory{Code: []dns.SVCBKey{dns.SVCB_ALPN, dns.SVCB_ECHCONFIG}},
			&dns.SVCBAlpn{Alpn: []string{"h2"}},
			&dns.SVCBECHConfig{ECH: []byte("outer.example.net hides the inner name")},
			&dns.SVCBIPv4Hint{Hint: []net.IP{net.ParseIP("192.0.2.7")}},
		}}
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP("192.0.2.7")})
		case dns.TypeAAAA:
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::7")})
		case dns.TypeSVCB:
			m.Answer = append(m.Answer, &svcb)
		case dns.TypeHTTPS:
			m.Answer = append(m.Answer, &dns.HTTPS{SVCB: svcb})
		case dns.TypeTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{"data from the zone"}})
		}
		_ = w.WriteMsg(m)
	}))
	return u
}

func (u *recordingUpstream) questions() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.asked...)
}

// query asks the DNS daemon at addr one question over UDP.
func query(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	resp, _, err := c.ExchangeContext(t.Context(), new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype), addr)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.Type(qtype), err)
	}
	return resp
}

// startNamesBundle runs the DNS daemon (and the proxy, with egress) over a
// recording upstream with an exact and a wildcard rule, then change.
func startNamesBundle(t *testing.T, res *resolver, change func(*Config)) (*testBundle, *recordingUpstream) {
	t.Helper()
	up := startRecordingUpstream(t)
	cfg := baseConfig(res, "allowed.test", "*.wild.test:*")
	cfg.Daemons, cfg.DNSUpstream = []string{"egress", "dns"}, up.addr
	if change != nil {
		change(&cfg)
	}
	return startBundle(t, cfg), up
}

// The attack: data leaves in the records of a TXT (NULL, ANY...) query
// for an allowed name, whose zone the attacker serves. The daemon answers
// only the types name resolution needs, and never forwards the others.
func TestDNSQueryTypes(t *testing.T) {
	t.Parallel()
	b, up := startNamesBundle(t, newResolver(nil), nil)
	tests := []struct {
		name  string
		qtype uint16
		ok    bool
	}{
		{"allowed.test", dns.TypeA, true},
		{"allowed.test", dns.TypeAAAA, true},
		{"allowed.test", dns.TypeCNAME, true},
		{"allowed.test", dns.TypeHTTPS, true},
		{"allowed.test", dns.TypeSVCB, true},
		{"a.wild.test", dns.TypeA, true},
		{"allowed.test", dns.TypeTXT, false},
		{"a.wild.test", dns.TypeTXT, false},
		{"allowed.test", dns.TypeNULL, false},
		{"allowed.test", dns.TypeANY, false},
		{"allowed.test", dns.TypeMX, false},
		{"allowed.test", dns.TypeSRV, false},
		{"allowed.test", dns.TypePTR, false},
		{"allowed.test", dns.TypeNS, false},
		{"allowed.test", dns.TypeSOA, false},
		{"allowed.test", dns.TypeCAA, false},
		{"allowed.test", dns.TypeDNSKEY, false},
		{"allowed.test", 65280, false}, // private use
	}
	var want []string
	for _, tt := range tests {
		t.Run(tt.name+"/"+dns.Type(tt.qtype).String(), func(t *testing.T) {
			resp := query(t, b.dns, tt.name, tt.qtype)
			rcode := dns.RcodeRefused
			if tt.ok {
				rcode = dns.RcodeSuccess
				want = append(want, tt.name+" "+dns.Type(tt.qtype).String())
			}
			if resp.Rcode != rcode || (!tt.ok && len(resp.Answer) != 0) {
				t.Errorf("= %s %v, want %s", dns.RcodeToString[resp.Rcode], resp.Answer, dns.RcodeToString[rcode])
			}
		})
	}
	if got := up.questions(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the upstream was asked %q, want %q (the answered types only)", got, want)
	}
	ds := b.log.decisions()
	if len(ds) != len(tests) {
		t.Fatalf("%d decision lines, want %d:\n%s", len(ds), len(tests), b.log)
	}
	for i, d := range ds {
		tt := tests[i]
		if d.QType != dns.Type(tt.qtype).String() || d.Allowed() != tt.ok ||
			(!tt.ok && !strings.Contains(d.Reason, "query type "+d.QType+" is not answered")) {
			t.Errorf("decision %d = %+v, want %s %s allowed=%v", i, d, tt.name, dns.Type(tt.qtype), tt.ok)
		}
	}
}

// Names under a wildcard rule are bounded in length, in the DNS daemon and
// in the proxy alike; names of exact rules are not.
func TestNameLimits(t *testing.T) {
	t.Parallel()
	label := func(n int) string { return strings.Repeat("x", n) }
	// name builds a name of n characters under wild.test from 40-character
	// labels.
	name := func(n int) string {
		n -= len(".wild.test")
		var ls []string
		for n > 0 {
			l := min(n, 40)
			if n-l == 1 { // no empty label
				l--
			}
			ls = append(ls, label(l))
			n -= l + 1
		}
		return strings.Join(ls, ".") + ".wild.test"
	}
	long := label(60) + "." + label(60) + ".exact.test"
	tests := []struct {
		name   string
		limits [3]string // BOTTLE_DNS_MAX_NAME_LENGTH, _MAX_LABEL_LENGTH, _NEW_NAMES_PER_MINUTE
		host   string
		reason string // "" when allowed
	}{
		{"name at the default limit", [3]string{}, name(100), ""},
		{"name over the default limit", [3]string{}, name(101), "the name is 101 characters long; names under the wildcard rule *.wild.test:* have at most 100 (spec.bundle.egress.dns.maxNameLength)"},
		{"label at the default limit", [3]string{}, label(40) + ".wild.test", ""},
		{"label over the default limit", [3]string{}, label(41) + ".wild.test", "a label of the name is 41 characters long; names under the wildcard rule *.wild.test:* have labels of at most 40 (spec.bundle.egress.dns.maxLabelLength)"},
		{"exact rule, long name and labels", [3]string{}, long, ""},
		{"name limit set", [3]string{"30"}, name(31), "have at most 30 (spec.bundle.egress.dns.maxNameLength)"},
		{"name limit set, at it", [3]string{"30"}, name(30), ""},
		{"label limit set", [3]string{"", "8"}, label(9) + ".wild.test", "labels of at most 8 (spec.bundle.egress.dns.maxLabelLength)"},
		{"limits raised to the maximum", [3]string{"253", "63"}, label(63) + "." + label(63) + "." + label(63) + ".wild.test", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			echo := startListener(t, "tcp", "127.0.0.1:0", true)
			res := newResolver(map[string]string{tt.host: "127.0.0.1"})
			b, up := startNamesBundle(t, res, func(c *Config) {
				c.EgressAllow = append(c.EgressAllow, long+":*")
				c.DNSMaxNameLength, c.DNSMaxLabelLength, c.DNSNewNamesPerMinute = tt.limits[0], tt.limits[1], tt.limits[2]
			})
			resp := query(t, b.dns, tt.host, dns.TypeA)
			conn, _ := dialProxy(t, b.proxy).do(t, http.MethodConnect, net.JoinHostPort(tt.host, strconv.Itoa(echo.port)), "")
			if tt.reason == "" {
				if resp.Rcode != dns.RcodeSuccess || conn.StatusCode != http.StatusOK {
					t.Fatalf("DNS %s, CONNECT %s; want both allowed:\n%s", dns.RcodeToString[resp.Rcode], conn.Status, b.log)
				}
				return
			}
			if resp.Rcode != dns.RcodeRefused {
				t.Errorf("DNS = %s, want REFUSED", dns.RcodeToString[resp.Rcode])
			}
			if conn.StatusCode != http.StatusForbidden || conn.Header.Get(DeniedHeader) != deniedNameLimit {
				t.Errorf("CONNECT = %s (%s), want 403 %s", conn.Status, conn.Header.Get(DeniedHeader), deniedNameLimit)
			}
			if q := up.questions(); len(q) != 0 || res.wasAsked(tt.host) || echo.accepts.Load() != 0 {
				t.Errorf("a refused name was looked up or dialled: upstream %q, resolver %v, accepts %d", q, res.wasAsked(tt.host), echo.accepts.Load())
			}
			ds := b.log.decisions()
			if len(ds) != 2 || ds[0].Daemon != "dns" || ds[1].Daemon != "egress" {
				t.Fatalf("decisions = %+v, want one of the DNS daemon, one of the proxy:\n%s", ds, b.log)
			}
			for _, d := range ds {
				if d.Allowed() || !strings.Contains(d.Reason, tt.reason) || strings.Contains(d.Reason, "xxxxxxxx.") {
					t.Errorf("%s decision = %+v, want a denial naming the limit %q (and not the name)", d.Daemon, d, tt.reason)
				}
			}
		})
	}
}

// The attack: data leaves as many short names under an allowed wildcard,
// each a query to whoever serves the zone. The 61st distinct name within
// a minute is refused, by the DNS daemon and the proxy, which share the
// count; names seen already, and exact names, still pass.
func TestNewNamesPerMinute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, limit string
		n           int
	}{
		{"default", "", spec.DefaultDNSNewNamesPerMinute},
		{"set", "5", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			echo := startListener(t, "tcp", "127.0.0.1:0", true)
			hosts := map[string]string{"allowed.test": "127.0.0.1"}
			chunk := func(i int) string { return fmt.Sprintf("chunk%03d.wild.test", i) }
			for i := range tt.n + 2 {
				hosts[chunk(i)] = "127.0.0.1"
			}
			res := newResolver(hosts)
			b, up := startNamesBundle(t, res, func(c *Config) { c.DNSNewNamesPerMinute = tt.limit })
			connect := func(host string) *http.Response {
				resp, _ := dialProxy(t, b.proxy).do(t, http.MethodConnect, net.JoinHostPort(host, strconv.Itoa(echo.port)), "")
				return resp
			}
			// Half the names through the DNS daemon, half through the proxy:
			// one count.
			for i := range tt.n {
				if i%2 == 0 {
					if r := query(t, b.dns, chunk(i), dns.TypeA); r.Rcode != dns.RcodeSuccess {
						t.Fatalf("name %d of %d: DNS %s, want allowed", i+1, tt.n, dns.RcodeToString[r.Rcode])
					}
				} else if r := connect(chunk(i)); r.StatusCode != http.StatusOK {
					t.Fatalf("name %d of %d: CONNECT %s, want allowed", i+1, tt.n, r.Status)
				}
			}
			if r := query(t, b.dns, chunk(tt.n), dns.TypeA); r.Rcode != dns.RcodeRefused {
				t.Errorf("DNS of name %d = %s, want REFUSED", tt.n+1, dns.RcodeToString[r.Rcode])
			}
			if r := connect(chunk(tt.n + 1)); r.StatusCode != http.StatusForbidden || r.Header.Get(DeniedHeader) != deniedNameLimit {
				t.Errorf("CONNECT to name %d = %s (%s), want 403 %s", tt.n+2, r.Status, r.Header.Get(DeniedHeader), deniedNameLimit)
			}
			if res.wasAsked(chunk(tt.n+1)) || strings.Contains(strings.Join(up.questions(), ","), chunk(tt.n)) {
				t.Errorf("a refused name was looked up")
			}
			// Names seen within the minute, by either, count no more.
			if r := query(t, b.dns, chunk(1), dns.TypeAAAA); r.Rcode != dns.RcodeSuccess {
				t.Errorf("DNS of a name the proxy looked up = %s, want allowed", dns.RcodeToString[r.Rcode])
			}
			if r := connect(chunk(0)); r.StatusCode != http.StatusOK {
				t.Errorf("CONNECT to a name the DNS daemon answered = %s, want allowed", r.Status)
			}
			if r := query(t, b.dns, "allowed.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
				t.Errorf("DNS of an exact name = %s, want allowed", dns.RcodeToString[r.Rcode])
			}
			var refused []Decision
			for _, d := range b.log.decisions() {
				if !d.Allowed() {
					refused = append(refused, d)
				}
			}
			if len(refused) != 2 {
				t.Fatalf("%d denials, want 2:\n%s", len(refused), b.log)
			}
			for _, d := range refused {
				want := fmt.Sprintf("looked up %d distinct names under wildcard rules in the last minute, the most spec.bundle.egress.dns.newNamesPerMinute allows", tt.n)
				if !strings.Contains(d.Reason, want) {
					t.Errorf("%s decision = %+v, want the reason %q", d.Daemon, d, want)
				}
			}
		})
	}
}

// The window slides: a name counts for one minute from when it was first
// seen, then it and room for a new one are free again.
func TestNameGuardWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newNameGuard(100, 40, 2, func() time.Time { return now })
	wild, exact := spec.EgressRule{Host: "wild.test", Wildcard: true}, spec.EgressRule{Host: "x.test"}
	steps := []struct {
		after time.Duration
		host  string
		rule  spec.EgressRule
		ok    bool
	}{
		{0, "a.wild.test", wild, true},
		{10 * time.Second, "b.wild.test", wild, true},
		{0, "c.wild.test", wild, false},
		{0, "a.wild.test", wild, true}, // seen
		{0, "x.test", exact, true},     // exact names are not counted
		{49 * time.Second, "c.wild.test", wild, false},
		{time.Second, "c.wild.test", wild, true}, // a's minute is over
		{0, "a.wild.test", wild, false},          // a is new again, and b and c fill the window
		{10 * time.Second, "a.wild.test", wild, true},
	}
	for i, s := range steps {
		now = now.Add(s.after)
		if got := g.check(s.host, s.rule) == ""; got != s.ok {
			t.Errorf("step %d: %s at +%s allowed = %v, want %v", i, s.host, s.after, got, s.ok)
		}
	}
}

// HTTPS and SVCB answers lose their ech parameter, and its mention in
// mandatory: with ECH, a client would hide the name it reaches behind an
// outer SNI.
func TestDNSStripsECH(t *testing.T) {
	t.Parallel()
	b, _ := startNamesBundle(t, newResolver(nil), nil)
	for _, qtype := range []uint16{dns.TypeHTTPS, dns.TypeSVCB} {
		for _, name := range []string{"allowed.test", "a.wild.test"} {
			resp := query(t, b.dns, name, qtype)
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Fatalf("%s %s = %s %v, want one answer", name, dns.Type(qtype), dns.RcodeToString[resp.Rcode], resp.Answer)
			}
			var s *dns.SVCB
			switch rr := resp.Answer[0].(type) {
			case *dns.HTTPS:
				s = &rr.SVCB
			case *dns.SVCB:
				s = rr
			}
			if s == nil {
				t.Fatalf("%s %s answer = %T", name, dns.Type(qtype), resp.Answer[0])
			}
			var keys []string
			for _, kv := range s.Value {
				keys = append(keys, kv.Key().String()+"="+kv.String())
			}
			if got, want := strings.Join(keys, " "), "mandatory=alpn alpn=h2 ipv4hint=192.0.2.7"; got != want {
				t.Errorf("%s %s parameters = %q, want %q", name, dns.Type(qtype), got, want)
			}
		}
	}
}

func TestStripECHDropsEmptyMandatory(t *testing.T) {
	t.Parallel()
	m := new(dns.Msg)
	m.Extra = []dns.RR{&dns.SVCB{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeSVCB, Class: dns.ClassINET}, Priority: 1, Target: ".",
		Value: []dns.SVCBKeyValue{&dns.SVCBMandatory{Code: []dns.SVCBKey{dns.SVCB_ECHCONFIG}}, &dns.SVCBECHConfig{ECH: []byte{1}}}}}
	stripECH(m)
	if v := m.Extra[0].(*dns.SVCB).Value; len(v) != 0 {
		t.Errorf("parameters left = %v, want none", v)
	}
}

func TestParseLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want int
		err  bool
	}{
		{"", 60, false}, {"0", 60, false}, {"1", 1, false}, {"100", 100, false},
		{"101", 0, true}, {"-1", 0, true}, {"x", 0, true}, {"1e2", 0, true},
	} {
		got, err := parseLimit("BOTTLE_X", tt.in, 60, 100)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("parseLimit(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

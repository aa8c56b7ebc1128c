package probe

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer starts a DNS server on loopback: ok.test has two A records,
// empty.test none, refused.test and servfail.test get those rcodes, names
// under open.test have a TXT record, names under strict.test get REFUSED
// for every type but A, and every other name NXDOMAIN.
func dnsServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			name := strings.ToLower(q.Question[0].Name)
			switch {
			case strings.HasSuffix(name, ".open.test."):
				rr, _ := dns.NewRR(name + " 60 IN TXT \"data\"")
				m.Answer = append(m.Answer, rr)
				w.WriteMsg(m)
				return
			case strings.HasSuffix(name, ".strict.test.") && q.Question[0].Qtype != dns.TypeA:
				m.Rcode = dns.RcodeRefused
				w.WriteMsg(m)
				return
			}
			switch name {
			case "ok.test.":
				for _, ip := range []string{"192.0.2.10", "192.0.2.11"} {
					rr, _ := dns.NewRR("ok.test. 60 IN A " + ip)
					m.Answer = append(m.Answer, rr)
				}
			case "empty.test.":
			case "refused.test.":
				m.Rcode = dns.RcodeRefused
			case "servfail.test.":
				m.Rcode = dns.RcodeServerFailure
			default:
				m.Rcode = dns.RcodeNameError
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// udpBlackhole is a UDP socket that reads nothing and answers nothing.
func udpBlackhole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestDNS(t *testing.T) {
	t.Parallel()
	srv, hole, closed := dnsServer(t), udpBlackhole(t), closedPort(t, "udp")
	tests := []struct {
		name     string
		addr     string
		target   string
		resolver func() (string, error)
		expect   Expect
		got      string
		ok       bool
		detail   string
	}{
		{"resolves", srv, "ok.test", nil, ExpectResolves, "resolves", true, "answered 192.0.2.10, 192.0.2.11"},
		{"resolves fqdn", srv, "OK.test.", nil, ExpectResolves, "resolves", true, "192.0.2.10"},
		{"resolves is a hole", srv, "ok.test", nil, ExpectFails, "resolves", false, ""},
		{"no A record", srv, "empty.test", nil, ExpectFails, "noanswer", true, "without a record of type A"},
		{"refused", srv, "refused.test", nil, ExpectFails, "refused", true, "answered REFUSED"},
		{"refused is what a policy says", srv, "refused.test", nil, ExpectRefused, "refused", true, "answered REFUSED"},
		{"nxdomain is not a refusal", srv, "bottle-apply-verify.invalid", nil, ExpectRefused, "nxdomain", false, ""},
		{"a timeout is not a refusal", hole, "ok.test", nil, ExpectRefused, "timeout", false, ""},
		{"refused is an answer", srv, "refused.test", nil, ExpectUnreachable, "refused", false, ""},
		{"nxdomain", srv, "bottle-apply-verify.invalid", nil, ExpectFails, "nxdomain", true, "NXDOMAIN"},
		{"nxdomain does not resolve", srv, "nope.test", nil, ExpectResolves, "nxdomain", false, ""},
		{"servfail", srv, "servfail.test", nil, ExpectFails, "servfail", true, "SERVFAIL"},
		{"timeout fails", hole, "ok.test", nil, ExpectFails, "timeout", true, "no answer from " + hole + " within 200ms"},
		{"timeout is unreachable", hole, "ok.test", nil, ExpectUnreachable, "timeout", true, "no answer from " + hole + " within 50ms"},
		{"port unreachable fails", closed, "ok.test", nil, ExpectFails, "port-unreachable", true, "ICMP port unreachable"},
		{"port unreachable is an answer", closed, "ok.test", nil, ExpectUnreachable, "port-unreachable", false, ""},
		{"system resolver", "", "ok.test", func() (string, error) { return srv, nil }, ExpectResolves, "resolves", true,
			srv + " (the system resolver) answered"},
		{"no system resolver", "", "ok.test", func() (string, error) { return "", errors.New("no resolv.conf") },
			ExpectFails, "error", false, "no resolv.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Check{Name: tt.name, Kind: KindDNS, Addr: tt.addr, Target: tt.target, Expect: tt.expect}
			r := Run(t.Context(), []Check{c}, Options{DNSTimeout: 200 * time.Millisecond, Silence: 50 * time.Millisecond, resolver: tt.resolver})[0]
			if r.Got != tt.got || r.OK != tt.ok || !strings.Contains(r.Detail, tt.detail) {
				t.Fatalf("result = %+v, want got %s, ok %v, detail with %q", r, tt.got, tt.ok, tt.detail)
			}
		})
	}
}

func TestDNSUnreachable(t *testing.T) {
	t.Parallel()
	c := Check{Kind: KindDNS, Addr: "192.0.2.1:53", Target: "ok.test", Expect: ExpectUnreachable}
	r := Run(t.Context(), []Check{c}, Options{dial: failDial(errNetUnreach)})[0]
	if r.Got != "unreachable" || !r.OK {
		t.Fatalf("result = %+v, want an OK unreachable", r)
	}
}

func TestParseResolvConf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, conf, want, err string
	}{
		{"docker", "# Generated by Docker\nnameserver 127.0.0.11\nsearch x.example\noptions ndots:0\n", "127.0.0.11:53", ""},
		{"first of several", "nameserver 10.0.0.2\nnameserver 10.0.0.3\n", "10.0.0.2:53", ""},
		{"ipv6", "nameserver fd00::53\n", "[fd00::53]:53", ""},
		{"none", "search example.com\n", "", "no nameserver"},
		{"a name", "nameserver dns.example\n", "", "not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseResolvConf(strings.NewReader(tt.conf))
			if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("parseResolvConf() = %q, %v; want %q, error with %q", got, err, tt.want, tt.err)
			}
		})
	}
}

// A query of another type than A: the records counted are the type's.
func TestDNSQType(t *testing.T) {
	t.Parallel()
	srv := dnsServer(t)
	tests := []struct {
		name, target, qtype string
		expect              Expect
		got                 string
		ok                  bool
	}{
		{"TXT refused", "x1.strict.test", "TXT", ExpectRefused, "refused", true},
		{"TXT answered is a hole", "x1.open.test", "TXT", ExpectRefused, "resolves", false},
		{"TXT answered resolves", "x1.open.test", "TXT", ExpectResolves, "resolves", true},
		{"an A record is not a TXT answer", "ok.test", "TXT", ExpectResolves, "noanswer", false},
		{"a TXT record is not an A answer", "x1.open.test", "", ExpectResolves, "noanswer", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Check{Name: tt.name, Kind: KindDNS, Addr: srv, Target: tt.target, QType: tt.qtype, Expect: tt.expect}
			r := Run(t.Context(), []Check{c}, Options{DNSTimeout: time.Second})[0]
			if r.Got != tt.got || r.OK != tt.ok {
				t.Fatalf("result = %+v, want got %s, ok %v", r, tt.got, tt.ok)
			}
		})
	}
}

package view

import (
	"bytes"
	"testing"

	"github.com/bottle-apply/bottle-apply/probe"
	"github.com/bottle-apply/bottle-apply/verify"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	tls := probe.Check{Name: "a CONNECT to api.example.com:443 carrying a ClientHello for x.invalid", Kind: probe.KindProxyTLS,
		Addr: "10.0.0.2:8888", Target: "api.example.com:443", SNI: "x.invalid", Expect: probe.ExpectDenied}
	tcp := probe.Check{Name: "the host through the gateway 10.0.0.1:9", Kind: probe.KindTCP, Addr: "10.0.0.1:9", Expect: probe.ExpectUnreachable}
	reports := []verify.Report{
		{Bottle: "a", OK: true, DurationMS: 245, Results: []probe.Result{
			{Check: tcp, Got: "unreachable", OK: true},
			{Check: tls, Got: "no-tunnel", OK: true, Detail: "the proxy opened no tunnel (502 Bad Gateway), so the ClientHello was not sent"},
		}},
		{Bottle: "b", OK: true, DurationMS: 1500, Results: []probe.Result{
			{Check: tls, Got: "denied", OK: true, Detail: "refused with a TLS alert access_denied"},
		}},
		{Bottle: "c", Results: []probe.Result{{Check: tls, Got: "closed"}, {Check: tcp, Got: "unreachable", OK: true}},
			Holes: []string{"the egress proxy opens a TLS tunnel whose SNI is not its CONNECT host (domain fronting): ... (got closed, want denied)"}},
		{Bottle: "d", Error: "no agent"},
		{Bottle: "e", Skipped: "not verifiable with this smolvm"},
	}
	var out bytes.Buffer
	Verify(&out, reports)
	want := `Verify a: 2 checks passed in 245ms.
  (passed without reaching what it checks: a CONNECT to api.example.com:443 carrying a ClientHello for x.invalid: the proxy opened no tunnel (502 Bad Gateway), so the ClientHello was not sent)
Verify b: 1 checks passed in 1.5s.
Verify c: 1 of 2 checks FAILED:
  - the egress proxy opens a TLS tunnel whose SNI is not its CONNECT host (domain fronting): ... (got closed, want denied)
Verify d: could not run: no agent
Verify e: not verifiable with this smolvm.
`
	if out.String() != want {
		t.Errorf("Verify() =\n%s\nwant\n%s", out.String(), want)
	}
}

package bundle

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckHost(t *testing.T) {
	t.Parallel()
	tests := []struct{ host, want string }{
		{"api.example.com", ""},
		{"a", ""},
		{"_dmarc.example.com", ""},
		{"xn--bcher-kva.example", ""},
		{"10.1.2.3", ""},
		{"2001:db8::1", ""},
		{"fe80::1%eth0", ""},
		{strings.Repeat("a", 63) + ".example", ""},
		{strings.Repeat("a.", 126) + "a", ""}, // 253 bytes
		{"", "the request names no host"},
		{strings.Repeat("a.", 126) + "ab", "the host is 254 bytes long; a host name has at most 253"},
		{".pkg.example.org", "it has an empty label"},
		{"api.example.com.", "it has an empty label"},
		{"a..b", "it has an empty label"},
		{strings.Repeat("a", 64) + ".example", "a label is 64 bytes long, at most 63"},
		{"*.example.com", `it holds '*'`},
		{"a b.example.com", `it holds ' '`},
		{"a\x00b.example.com", `it holds '\x00'`},
		{"caf\xc3\xa9.example", `it holds '\u00c3'`},
		{"API.example.com", "it holds 'A'"}, // hosts are checked lower-cased
		{"-a.example.com", "starts or ends with '-'"},
		{"a-.example.com", "starts or ends with '-'"},
		{"[::1]", "it holds '['"},
		{"1.2.3.4:80", "it holds ':'"},
	}
	for _, tt := range tests {
		got := checkHost(tt.host)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("checkHost(%q) = %q, want %q", tt.host, got, tt.want)
		}
		if got != "" && len(tt.host) > 3 && strings.Contains(got, tt.host) {
			t.Errorf("checkHost(%q) = %q quotes the host", tt.host, got)
		}
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456..."},
		{"ééééé", 8, "éé..."}, // never half a rune
	}
	for _, tt := range tests {
		got := clip(tt.s, tt.n)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
		if len(got) > tt.n {
			t.Errorf("clip(%q, %d) = %q, longer than %d", tt.s, tt.n, got, tt.n)
		}
	}
	if got := logSafe("a\"b\\c\x00d\xffé\n", 100); got != "a?b?c?d????" {
		t.Errorf("logSafe = %q", got)
	}
	if got := logSafe("api.example.com", 100); got != "api.example.com" {
		t.Errorf("logSafe changed a host name: %q", got)
	}
}

// A huge host is refused before it reaches the log or the denial, which
// stay small. Through the proxy, net/http refuses a request line this long
// itself (maxHeaderBytes); decide is the guard behind it.
func TestEgressHugeHost(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("a", 700<<10) + ".example.com"
	p, self := policyForTest(t)
	var log logBuffer
	e := &egress{p: p, self: self, dl: &decisionLog{log: newLogger(&log, "hello"), st: &statusState{}}}
	for _, line := range []string{
		"CONNECT " + huge + ":443",
		"GET http://" + huge + "/",
		"CONNECT " + huge, // not host:port
		"GET ftp://" + huge + "/",
		"CONNECT api.example.com:" + strings.Repeat("4", 700<<10),
		"GET " + strings.Repeat("x", 700<<10) + "://api.example.com/",
	} {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			t.Fatalf("ReadRequest(%.40s...): %v", line, err)
		}
		v := e.decide(r)
		if v.allowed() || v.status != http.StatusBadRequest || v.short != deniedBadTarget {
			t.Errorf("decide(%.40s...) = %d %s, want 400 %s", line, v.status, v.short, deniedBadTarget)
		}
		if len(v.host) > maxHostLen || len(v.reason) > maxReasonLen {
			t.Errorf("decide(%.40s...): host %d bytes, reason %d bytes", line, len(v.host), len(v.reason))
		}
		e.dl.egress(v.method, v.host, v.port, "", v.reason)
		resp := e.denial(r, &v)
		body, _ := io.ReadAll(resp.Body)
		if len(body) > 2<<10 {
			t.Errorf("denial of %.40s... is %d bytes", line, len(body))
		}
	}
	for _, l := range log.lines() {
		if len(l) >= 2<<10 {
			t.Errorf("log line of %d bytes: %.200s...", len(l), l)
		}
	}
	if n := len(log.decisions()); n != 6 {
		t.Fatalf("%d decision lines, want 6", n)
	}
}

// Through the proxy: a host too long for a name is a 400 bad-target with
// a small log line; one too long for the request line is refused by
// net/http before the proxy sees it, and logged as a 431 (refusal.go).
func TestEgressLongHostThroughProxy(t *testing.T) {
	t.Parallel()
	never := startListener(t, "tcp", "127.0.0.1:0", false)
	res := newResolver(map[string]string{"a.wild.test": "127.0.0.1"})
	b := startBundle(t, baseConfig(res, "*.wild.test:*"))
	long := strings.Repeat("a", 30<<10) + ".wild.test"
	for _, target := range []string{long + ":443", "a..wild.test:443", ".wild.test:443", "a.wild.test..:443"} {
		resp, body := dialProxy(t, b.proxy).do(t, "CONNECT", target, "")
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(DeniedHeader) != deniedBadTarget || len(body) > 2<<10 {
			t.Errorf("CONNECT %.40s... = %s (%s), %d-byte body; want 400 %s", target, resp.Status, resp.Header.Get(DeniedHeader), len(body), deniedBadTarget)
		}
	}
	c := dialProxy(t, b.proxy)
	resp, _ := c.do(t, "CONNECT", strings.Repeat("a", 700<<10)+".wild.test:443", "")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("CONNECT with a 700 KiB host = %s, want 431", resp.Status)
	}
	if n := never.accepts.Load(); n != 0 {
		t.Fatalf("a bad target was dialled %d times", n)
	}
	if res.wasAsked(long) {
		t.Fatalf("the long name was resolved")
	}
	ds := b.log.decisions()
	if len(ds) != 5 {
		t.Fatalf("%d decision lines, want 5:\n%.2000s", len(ds), b.log)
	}
	if d := ds[4]; d.Status != http.StatusRequestHeaderFieldsTooLarge || d.Host != "" || d.Client == "" {
		t.Errorf("decision of the 431 = %+v", d)
	}
	for _, l := range b.log.lines() {
		if len(l) >= 2<<10 {
			t.Errorf("log line of %d bytes: %.200s...", len(l), l)
		}
	}
	if !bytes.Contains([]byte(ds[0].Reason), []byte("the host is 30730 bytes long")) || len(ds[0].Host) > maxHostLen || ds[0].Port != 443 {
		t.Errorf("decision = %+v", ds[0])
	}
}

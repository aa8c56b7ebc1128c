package spec

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseEgressRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    EgressRule
		str     string
		wantErr string
	}{
		{in: "api.example.com", want: EgressRule{Host: "api.example.com", Ports: []int{80, 443}}, str: "api.example.com"},
		{in: "API.Example.COM.", want: EgressRule{Host: "api.example.com", Ports: []int{80, 443}}, str: "api.example.com"},
		{in: "git.example.com:22", want: EgressRule{Host: "git.example.com", Ports: []int{22}}, str: "git.example.com:22"},
		{in: "any.example.com:*", want: EgressRule{Host: "any.example.com"}, str: "any.example.com:*"},
		{in: "*.example.com", want: EgressRule{Host: "example.com", Wildcard: true, Ports: []int{80, 443}}, str: "*.example.com"},
		{in: "*.example.com:8443", want: EgressRule{Host: "example.com", Wildcard: true, Ports: []int{8443}}, str: "*.example.com:8443"},
		{in: "under_score.example", want: EgressRule{Host: "under_score.example", Ports: []int{80, 443}}, str: "under_score.example"},
		{in: "localhost", want: EgressRule{Host: "localhost", Ports: []int{80, 443}}, str: "localhost"},
		{in: "api.example.com:8443/tls", want: EgressRule{Host: "api.example.com", Ports: []int{8443}, TLS: true}, str: "api.example.com:8443/tls"},
		{in: "*.example.com:8443/TLS", want: EgressRule{Host: "example.com", Wildcard: true, Ports: []int{8443}, TLS: true}, str: "*.example.com:8443/tls"},
		{in: "api.example.com/tls", wantErr: `marks no port as TLS; name the port that carries it, as in "api.example.com:8443/tls"`},
		{in: "any.example.com:*/tls", want: EgressRule{Host: "any.example.com", TLS: true}, str: "any.example.com:*/tls"},
		{in: "x.example:8443/tcp", wantErr: `has port "8443/tcp"`},
		{in: "/tls", wantErr: "names no host"},
		{in: "", wantErr: "names no host"},
		{in: ":443", wantErr: "names no host"},
		{in: "*", wantErr: "would allow every host"},
		{in: "*:443", wantErr: "would allow every host"},
		{in: "**.example.com", wantErr: "a wildcard may only be the whole first label"},
		{in: "a.*.example.com", wantErr: "a wildcard may only be the whole first label"},
		{in: "10.0.0.1", wantErr: "is an IP address"},
		{in: "2130706433", wantErr: "ends with a number"},
		{in: "1.2.3:443", wantErr: "ends with a number"},
		{in: "*.10", wantErr: "ends with a number"},
		{in: "a.b2", want: EgressRule{Host: "a.b2", Ports: []int{80, 443}}, str: "a.b2"},
		{in: "10.0.0.1:443", wantErr: "is an IP address"},
		{in: "[::1]:443", wantErr: "is an IP address"},
		{in: "x.example:0", wantErr: `has port "0"`},
		{in: "x.example:080", wantErr: `has port "080"`},
		{in: "x.example:+80", wantErr: `has port "+80"`},
		{in: "x.example:65536", wantErr: `has port "65536"`},
		{in: "x.example:http", wantErr: `has port "http"`},
		{in: "x.example:", wantErr: `ends with ":"`},
		{in: "-x.example", wantErr: "starts or ends with '-'"},
		{in: "x..example", wantErr: "empty label"},
		{in: "x example", wantErr: "the name holds \" \""},
		{in: "x.example/path", wantErr: "the name holds \"/\""},
		{in: "ünï.example", wantErr: "a host name has letters"},
		{in: strings.Repeat("a.", 127) + "*", wantErr: "the name is longer than 253 characters"},
		{in: "a..*.example", wantErr: "a wildcard may only be the whole first label"},
	}
	for _, tt := range tests {
		got, err := ParseEgressRule(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseEgressRule(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) || got.String() != tt.str {
			t.Errorf("ParseEgressRule(%q) = %+v (%q), %v; want %+v (%q)", tt.in, got, got.String(), err, tt.want, tt.str)
		}
	}
}

// CheckHost is the rules of host names that ParseEgressRule and the
// bundle share; IP literals pass (the bundle's requests may name them).
func TestCheckHost(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 64)
	tests := []struct {
		host string
		want *HostError // nil when h passes
	}{
		{"api.example.com", nil},
		{"_dmarc.x-y.example", nil},
		{"10.1.2.3", nil},
		{"fe80::1%eth0", nil},
		{strings.Repeat("a.", 126) + "a", nil},
		{"", &HostError{Rule: HostEmpty}},
		{strings.Repeat("a.", 126) + "ab", &HostError{Rule: HostTooLong}},
		{"a..b", &HostError{Rule: HostEmptyLabel}},
		{"a.b.", &HostError{Rule: HostEmptyLabel}},
		{long + ".example", &HostError{Rule: HostLongLabel, Label: long}},
		{"ok.b*d.example", &HostError{Rule: HostBadByte, Label: "b*d", Byte: '*'}},
		{"API.example", &HostError{Rule: HostBadByte, Label: "API", Byte: 'A'}},
		{"[::1]", &HostError{Rule: HostBadByte, Label: "[::1]", Byte: '['}},
		{"a.x-.example", &HostError{Rule: HostHyphen, Label: "x-"}},
	}
	for _, tt := range tests {
		if got := CheckHost(tt.host); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("CheckHost(%q) = %+v, want %+v", tt.host, got, tt.want)
		}
	}
}

func TestEgressRulesMatch(t *testing.T) {
	t.Parallel()
	rules, err := ParseEgressRules([]string{"api.example.com", "*.pkg.example.org:443", "git.example.net:22", "any.example.io:*"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		port int
		rule string // "" = denied
	}{
		{"api.example.com", 443, "api.example.com"},
		{"API.EXAMPLE.COM.", 80, "api.example.com"},
		{"api.example.com", 8080, ""},
		{"sub.api.example.com", 443, ""},
		{"example.com", 443, ""},
		{"evilapi.example.com", 443, ""},
		{"api.example.com.evil.test", 443, ""},
		{"registry.pkg.example.org", 443, "*.pkg.example.org:443"},
		{"a.b.pkg.example.org", 443, "*.pkg.example.org:443"},
		{"pkg.example.org", 443, ""},
		{"xpkg.example.org", 443, ""},
		{"registry.pkg.example.org", 80, ""},
		{"git.example.net", 22, "git.example.net:22"},
		{"git.example.net", 443, ""},
		{"any.example.io", 1, "any.example.io:*"},
		{"any.example.io", 65535, "any.example.io:*"},
		{"", 443, ""},
	}
	for _, tt := range tests {
		r, ok := rules.Match(tt.host, tt.port)
		if got := map[bool]string{true: r.String()}[ok]; got != tt.rule {
			t.Errorf("Match(%q, %d) = %q, want %q", tt.host, tt.port, got, tt.rule)
		}
	}
	// MatchHost ignores ports: the DNS daemon answers for every allowed name.
	for host, want := range map[string]bool{"git.example.net": true, "x.pkg.example.org": true, "pkg.example.org": false, "other.test": false} {
		if _, ok := rules.MatchHost(host); ok != want {
			t.Errorf("MatchHost(%q) = %v, want %v", host, ok, want)
		}
	}
}

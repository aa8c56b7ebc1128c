package spec

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// EgressRule is one entry of spec.bundle.egress.allow: a host the agent may
// reach through the egress proxy, and on which ports.
//
//	example.com           example.com on ports 80 and 443
//	example.com:8443      example.com on port 8443 only
//	example.com:*         example.com on any port
//	*.example.com         any name under example.com (not example.com itself), ports 80 and 443
//	*.example.com:22      the same, port 22 only
//	example.com:8443/tls  port 8443, which carries TLS: its tunnels are
//	                      checked as those to port 443 are (the SNI)
//
// Names are matched case-insensitively and without a trailing dot. IP
// addresses are not rules: the ranges in network.allowCIDRs say which IP
// literals the proxy lets through.
type EgressRule struct {
	// Host is the lower-case name without a trailing dot; for a wildcard
	// rule, the domain under which names match (without "*.").
	Host     string
	Wildcard bool
	// Ports are the ports allowed; nil means any port.
	Ports []int
	// TLS marks the ports as carrying TLS (a "/tls" suffix): a tunnel to
	// them is opened only for a ClientHello whose SNI is its host, as
	// one to port 443 always is.
	TLS bool
}

// tlsSuffix marks a rule whose ports carry TLS.
const tlsSuffix = "/tls"

// DefaultEgressPorts are the ports of a rule that names none.
var DefaultEgressPorts = []int{80, 443}

// ParseEgressRule parses one allow entry.
func ParseEgressRule(s string) (EgressRule, error) {
	var r EgressRule
	rest := s
	if n := len(s) - len(tlsSuffix); n >= 0 && strings.EqualFold(s[n:], tlsSuffix) {
		rest, r.TLS = s[:n], true
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return r, fmt.Errorf("%s ends with \":\"; write a port number or * after it, or leave the port out (80 and 443)", quote(s))
		}
	}
	switch port {
	case "":
		r.Ports = DefaultEgressPorts
	case "*":
	default:
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return r, fmt.Errorf("%s has port %s; a port is a number from 1 to 65535, or * for any", quote(s), quote(port))
		}
		r.Ports = []int{n}
	}
	if host == "*" || host == "*." {
		return r, fmt.Errorf("%s would allow every host, which a bottle exists to prevent; list the hosts the agent needs", quote(s))
	}
	if strings.HasPrefix(host, "*.") {
		r.Wildcard = true
		host = host[2:]
	}
	host = NormalizeHost(host)
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return r, fmt.Errorf("%s is an IP address; allow addresses with network.allowCIDRs, rules name hosts", quote(s))
	}
	if e := CheckHost(host); e != nil {
		// A '*' the labels refuse is a misplaced wildcard: say so, unless
		// the name is too long anyway.
		if e.Rule != HostTooLong && strings.Contains(host, "*") {
			return r, fmt.Errorf("%s: a wildcard may only be the whole first label, as in *.example.com", quote(s))
		}
		return r, fmt.Errorf("%s: %s", quote(s), e)
	}
	// 2130706433 or 1.2.3 are addresses to some resolvers; no top-level
	// domain is a number.
	if last := host[strings.LastIndexByte(host, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		return r, fmt.Errorf("%s: the name ends with a number, as an IP address does; allow addresses with network.allowCIDRs", quote(s))
	}
	if r.TLS && port == "" {
		// 80 and 443: plain HTTP on 80 would be refused as not TLS.
		return r, fmt.Errorf("%s marks no port as TLS; name the port that carries it, as in %s", quote(s), quote(rest+":8443"+tlsSuffix))
	}
	r.Host = host
	return r, nil
}

// Bounds of a host name in text form (RFC 1035 2.3.4).
const (
	MaxHostLen  = 253
	MaxLabelLen = 63
)

// HostRule is a rule of host names (see CheckHost).
type HostRule int

const (
	HostEmpty      HostRule = iota + 1 // there is no host
	HostTooLong                        // more than MaxHostLen bytes
	HostEmptyLabel                     // a dot first, last or twice in a row
	HostLongLabel                      // a label of more than MaxLabelLen bytes
	HostBadByte                        // a byte other than a-z, 0-9, '-' and '_'
	HostHyphen                         // a label starts or ends with '-'
)

// HostError is the first rule of host names a host breaks, with the label
// and the byte at fault. Its text is the spec's, which quotes the label;
// the bundle words its own from Rule, never quoting a request's host.
type HostError struct {
	Rule  HostRule
	Label string // the label at fault: HostLongLabel, HostHyphen
	Byte  byte   // the byte at fault: HostBadByte
}

func (e *HostError) Error() string {
	switch e.Rule {
	case HostEmpty:
		return "names no host"
	case HostTooLong:
		return fmt.Sprintf("the name is longer than %d characters", MaxHostLen)
	case HostEmptyLabel:
		return "the name has an empty label"
	case HostLongLabel:
		return fmt.Sprintf("the label %s is longer than %d characters", quote(e.Label), MaxLabelLen)
	case HostBadByte:
		return fmt.Sprintf("the name holds %q; a host name has letters, digits, '-' and '_'", string(rune(e.Byte)))
	case HostHyphen:
		return "the label " + quote(e.Label) + " starts or ends with '-'"
	}
	return fmt.Sprintf("internal: host rule %d", e.Rule)
}

// CheckHost returns the first rule of host names h breaks, or nil when h
// is an IP literal or a host name: at most MaxHostLen bytes, labels of 1
// to MaxLabelLen letters, digits, '-' and '_' that neither start nor end
// with '-'. h is lower case, without a trailing dot (NormalizeHost).
// ParseEgressRule holds a rule's name to these rules, and the bundle a
// request's host and a DNS query's name.
func CheckHost(h string) *HostError {
	switch {
	case h == "":
		return &HostError{Rule: HostEmpty}
	case len(h) > MaxHostLen:
		return &HostError{Rule: HostTooLong}
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	for l := range strings.SplitSeq(h, ".") {
		if l == "" {
			return &HostError{Rule: HostEmptyLabel}
		}
		if len(l) > MaxLabelLen {
			return &HostError{Rule: HostLongLabel, Label: l}
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return &HostError{Rule: HostBadByte, Label: l, Byte: c}
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return &HostError{Rule: HostHyphen, Label: l}
		}
	}
	return nil
}

// String is the rule in the canonical form of the spec.
func (r EgressRule) String() string {
	h := r.Host
	if r.Wildcard {
		h = "*." + h
	}
	switch {
	case r.Ports == nil:
		h += ":*"
	case len(r.Ports) == 1:
		h += ":" + strconv.Itoa(r.Ports[0])
	}
	if r.TLS {
		h += tlsSuffix
	}
	return h
}

// MatchesHost reports whether the rule covers the name, whatever the port.
func (r EgressRule) MatchesHost(host string) bool {
	return r.matchesHost(NormalizeHost(host))
}

// Matches reports whether the rule allows host on port.
func (r EgressRule) Matches(host string, port int) bool {
	return r.matches(NormalizeHost(host), port)
}

// matchesHost is MatchesHost for a normalized name.
func (r EgressRule) matchesHost(host string) bool {
	if r.Wildcard {
		// host ends with "." + r.Host
		n := len(host) - len(r.Host)
		return n >= 1 && host[n-1] == '.' && host[n:] == r.Host
	}
	return host == r.Host
}

// matches is Matches for a normalized name.
func (r EgressRule) matches(host string, port int) bool {
	return r.matchesHost(host) && (r.Ports == nil || slices.Contains(r.Ports, port))
}

// NormalizeHost lower-cases a name and drops a trailing dot.
func NormalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// EgressRules is a parsed allowlist.
type EgressRules []EgressRule

// ParseEgressRules parses every entry; the first bad one is the error.
func ParseEgressRules(list []string) (EgressRules, error) {
	out := make(EgressRules, 0, len(list))
	for _, s := range list {
		r, err := ParseEgressRule(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Match returns the first rule that allows host on port.
func (rs EgressRules) Match(host string, port int) (EgressRule, bool) {
	host = NormalizeHost(host)
	for _, r := range rs {
		if r.matches(host, port) {
			return r, true
		}
	}
	return EgressRule{}, false
}

// MatchHost returns the first rule that covers host on some port.
func (rs EgressRules) MatchHost(host string) (EgressRule, bool) {
	host = NormalizeHost(host)
	for _, r := range rs {
		if r.matchesHost(host) {
			return r, true
		}
	}
	return EgressRule{}, false
}

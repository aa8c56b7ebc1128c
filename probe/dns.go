package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"github.com/miekg/dns"
)

// checkDNS sends one query of type c.QType (A by default) for c.Target to
// c.Addr over UDP.
func checkDNS(ctx context.Context, c Check, opt Options) (got, detail string) {
	addr, via := c.Addr, ""
	if addr == "" {
		a, err := opt.resolver()
		if err != nil {
			return gotError, "find the system resolver: " + err.Error()
		}
		addr, via = a, " (the system resolver)"
	}
	timeout := opt.bound(c, opt.DNSTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := opt.dial(ctx, "udp", addr)
	if err != nil {
		// A UDP connect sends nothing, so only a missing route or
		// address family fails here.
		if isUnreachable(err) {
			return string(ExpectUnreachable), err.Error()
		}
		return gotError, err.Error()
	}
	defer conn.Close()

	qtype := dns.TypeA
	if c.QType != "" {
		qtype = dns.StringToType[c.QType]
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(c.Target), qtype)
	client := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := client.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: conn})
	from := addr + via
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return gotPortUnreachable, "ICMP port unreachable from " + from + ": the peer's kernel answered"
		case isTimeout(err):
			return gotTimeout, fmt.Sprintf("no answer from %s within %s", from, timeout)
		case isUnreachable(err):
			return string(ExpectUnreachable), err.Error()
		}
		return gotError, "query " + from + ": " + err.Error()
	}
	return classifyAnswer(r, qtype, from)
}

// classifyAnswer sorts a DNS answer by its rcode and its records of type
// qtype.
func classifyAnswer(r *dns.Msg, qtype uint16, from string) (got, detail string) {
	switch r.Rcode {
	case dns.RcodeSuccess:
		var as []string
		for _, rr := range r.Answer {
			if rr.Header().Rrtype != qtype {
				continue
			}
			if a, ok := rr.(*dns.A); ok {
				as = append(as, a.A.String())
			} else {
				as = append(as, dns.TypeToString[qtype]+" record")
			}
		}
		if len(as) == 0 {
			return gotNoAnswer, from + " answered without a record of type " + dns.TypeToString[qtype]
		}
		return string(ExpectResolves), from + " answered " + strings.Join(as, ", ")
	case dns.RcodeNameError:
		return gotNXDomain, from + " answered NXDOMAIN"
	}
	name, ok := dns.RcodeToString[r.Rcode]
	if !ok {
		name = fmt.Sprintf("RCODE%d", r.Rcode)
	}
	return strings.ToLower(name), from + " answered " + name
}

// systemResolver is the first nameserver of /etc/resolv.conf, with its
// port.
func systemResolver() (string, error) {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseResolvConf(f)
}

// parseResolvConf returns the first nameserver of a resolv.conf as
// ip:port. A nameserver must be an IP address: the probe resolves no name
// to find where to send a query.
func parseResolvConf(r io.Reader) (string, error) {
	cfg, err := dns.ClientConfigFromReader(r)
	if err != nil {
		return "", fmt.Errorf("read resolv.conf: %w", err)
	}
	if len(cfg.Servers) == 0 {
		return "", errors.New("resolv.conf names no nameserver")
	}
	if _, err := netip.ParseAddr(cfg.Servers[0]); err != nil {
		return "", fmt.Errorf("resolv.conf: nameserver %q is not an IP address", cfg.Servers[0])
	}
	return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
}

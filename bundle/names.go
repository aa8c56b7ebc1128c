package bundle

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/bottle-apply/bottle-apply/spec"
)

// DNS carries names, not data: the DNS daemon answers only the query types
// name resolution needs, and the names under a wildcard rule, which the
// agent chooses, are bounded in length and in how many new ones a minute
// the bottle may look up, by the DNS daemon and the egress proxy alike.

// deniedNameLimit is the DeniedHeader value of a request whose name under
// a wildcard rule breaks a limit of spec.bundle.egress.dns.
const deniedNameLimit = "name-limit"

// The spec fields the name limits come from.
const (
	dnsLimitsField     = "spec.bundle.egress.dns"
	maxNameLengthField = dnsLimitsField + ".maxNameLength"
	maxLabelField      = dnsLimitsField + ".maxLabelLength"
	newNamesField      = dnsLimitsField + ".newNamesPerMinute"
)

// maxNewNamesPerMinute bounds BOTTLE_DNS_NEW_NAMES_PER_MINUTE, and so the
// names the window holds (spec's maximum).
const maxNewNamesPerMinute = 10000

// nameWindow is how long a name counts as seen.
const nameWindow = time.Minute

// answeredTypes are the query types the DNS daemon forwards: addresses,
// the CNAMEs that lead to them, and the service bindings (RFC 9460) that
// browsers and TLS clients ask for.
var answeredTypes = map[uint16]bool{
	dns.TypeA: true, dns.TypeAAAA: true, dns.TypeCNAME: true, dns.TypeHTTPS: true, dns.TypeSVCB: true,
}

// refusedType says why the DNS daemon does not answer a query of qtype, or
// "" when it does.
func refusedType(qtype uint16) string {
	if answeredTypes[qtype] || holes.dnsTypes {
		return ""
	}
	return fmt.Sprintf("query type %s is not answered; the DNS daemon answers A, AAAA, CNAME, HTTPS and SVCB only", dns.Type(qtype))
}

// nameGuard holds the names under wildcard rules to the limits of
// spec.bundle.egress.dns. One guard serves the bundle's DNS daemon and
// egress proxy, so a name counts once for both.
type nameGuard struct {
	maxName, maxLabel, perMinute int
	now                          func() time.Time

	mu sync.Mutex
	// seen holds each name counted within the last nameWindow with when
	// it was counted; order holds the same, oldest first.
	seen  map[string]time.Time
	order []seenName
}

type seenName struct {
	name string
	at   time.Time
}

func newNameGuard(maxName, maxLabel, perMinute int, now func() time.Time) *nameGuard {
	if now == nil {
		now = time.Now
	}
	return &nameGuard{maxName: maxName, maxLabel: maxLabel, perMinute: perMinute, now: now, seen: map[string]time.Time{}}
}

// check says why host, which rule covers, is refused, or "" when it may be
// looked up; an allowed name is counted. host is normalized and passed
// checkHost. Names of exact rules are never limited.
func (g *nameGuard) check(host string, rule spec.EgressRule) string {
	if !rule.Wildcard || holes.dnsTypes {
		return ""
	}
	// The name is the agent's: say how long it is, never what it holds.
	if len(host) > g.maxName {
		return fmt.Sprintf("the name is %d characters long; names under the wildcard rule %s have at most %d (%s)",
			len(host), rule, g.maxName, maxNameLengthField)
	}
	for l := range strings.SplitSeq(host, ".") {
		if len(l) > g.maxLabel {
			return fmt.Sprintf("a label of the name is %d characters long; names under the wildcard rule %s have labels of at most %d (%s)",
				len(l), rule, g.maxLabel, maxLabelField)
		}
	}
	if !g.count(host) {
		return fmt.Sprintf("the bottle looked up %d distinct names under wildcard rules in the last minute, the most %s allows; the rule %s",
			g.perMinute, newNamesField, rule)
	}
	return ""
}

// count counts host as seen now and reports true, unless it would be the
// perMinute+1-th distinct name within nameWindow: then it reports false.
// A name seen within the window counts once.
func (g *nameGuard) count(host string) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	i := 0
	for i < len(g.order) && now.Sub(g.order[i].at) >= nameWindow {
		delete(g.seen, g.order[i].name)
		i++
	}
	if i > 0 {
		g.order = slices.Delete(g.order, 0, i)
	}
	if _, ok := g.seen[host]; ok {
		return true
	}
	if len(g.order) >= g.perMinute {
		return false
	}
	g.seen[host] = now
	g.order = append(g.order, seenName{name: host, at: now})
	return true
}

// parseLimit is the BOTTLE_DNS_* variable name's value s, def when s is
// empty or "0", or an error unless it is a number from 1 to max.
func parseLimit(name, s string, def, max int) (int, error) {
	if s == "" || s == "0" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("%s: %q is not a number from 1 to %d", name, s, max)
	}
	return n, nil
}

// stripECH drops the ech parameter (and its mention in mandatory) from
// every SVCB and HTTPS record of m: with it, a client would hide the name
// it connects to behind an outer SNI that the proxy cannot check.
func stripECH(m *dns.Msg) {
	for _, rrs := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range rrs {
			var s *dns.SVCB
			switch rr := rr.(type) {
			case *dns.SVCB:
				s = rr
			case *dns.HTTPS:
				s = &rr.SVCB
			default:
				continue
			}
			s.Value = slices.DeleteFunc(s.Value, func(kv dns.SVCBKeyValue) bool {
				if m, ok := kv.(*dns.SVCBMandatory); ok {
					m.Code = slices.DeleteFunc(m.Code, func(k dns.SVCBKey) bool { return k == dns.SVCB_ECHCONFIG })
					return len(m.Code) == 0
				}
				return kv.Key() == dns.SVCB_ECHCONFIG
			})
		}
	}
}

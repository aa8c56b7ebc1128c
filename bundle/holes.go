package bundle

import "strings"

// holeSet names the checks that a test build of the bundle can leave out,
// so that a test proves that the self-test (bottle-apply --verify) reports
// each one missing. A released build opens none: the set is filled only
// in builds with the bottleholes tag (holes_on.go), from a string linked
// in at build time, never from the environment or the spec.
type holeSet struct {
	// host: the bundle dials the host's addresses and the subnet pool
	// (BOTTLE_DENY_CIDRS is ignored).
	host bool
	// sni: a checked tunnel takes any SNI and any Host.
	sni bool
	// dnsTypes: the DNS daemon forwards every query type, and names
	// under wildcards are not limited.
	dnsTypes bool
}

// parseHoles reads a comma-separated list of hole names: host, sni,
// dns-types.
func parseHoles(s string) holeSet {
	var h holeSet
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "host":
			h.host = true
		case "sni":
			h.sni = true
		case "dns-types":
			h.dnsTypes = true
		}
	}
	return h
}

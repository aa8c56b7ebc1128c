// Package hostguard keeps bottles off the host their engine runs on. Run
// on that host's network (a short-lived container with NET_ADMIN, made by
// the docker provider before it starts a bundle), it installs a firewall
// rule that drops every new connection that an address of the subnet pool
// opens to an address of the host, and it reports the host's interface
// addresses.
//
// The rule is the part that cannot go stale: the kernel decides per packet
// whether the destination is the host's own ("fib daddr type local"), so a
// bridge made after the bundle, an address the host gets later or one that
// changes is covered without anyone telling the bundle. The addresses it
// reports let the bundle refuse the host's known addresses before it
// dials, with a decision line that says why.
package hostguard

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Table and Chain name the firewall rules the guard installs: an ip
// family table of bottle-apply's own, so that nothing else's rules are
// touched, with one chain on the prerouting hook.
const (
	Table = "bottle_apply"
	Chain = "host_guard"
)

// Report is what the guard prints: one JSON object on stdout.
type Report struct {
	// Addrs are the host's interface addresses, loopback excluded: every
	// bridge's gateway, the LAN and public addresses.
	Addrs []string `json:"addrs"`
	// Bridges are those of Addrs that are on a bridge the engine made for
	// one of its networks (br-*): they come and go with the networks,
	// and the rule covers them whatever the bundles know.
	Bridges []string `json:"bridges,omitempty"`
	// Pools are the ranges whose new connections to the host the rule
	// drops (with -install).
	Pools []string `json:"pools,omitempty"`
	// Added are the pools that had no rule before this run.
	Added []string `json:"added,omitempty"`
}

// Main runs `bottle-bundle hostguard [-install] [-pool CIDR]...` and
// returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hostguard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	install := fs.Bool("install", false, "install the rule that drops new connections from each -pool to the host's addresses")
	uninstall := fs.Bool("uninstall", false, "remove the rules of every pool (the nftables table ip "+Table+")")
	var pools []netip.Prefix
	fs.Func("pool", "a subnet pool of bottles, as a CIDR (repeatable)", func(s string) error {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("%q is not an IPv4 CIDR", s)
		}
		if !slices.Contains(pools, p.Masked()) {
			pools = append(pools, p.Masked())
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hostguard: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *uninstall {
		if *install || len(pools) > 0 {
			fmt.Fprintln(stderr, "hostguard: -uninstall takes no -install nor -pool")
			return 2
		}
		if err := Uninstall(); err != nil {
			fmt.Fprintf(stderr, "hostguard: %v\n", err)
			return 1
		}
		return 0
	}
	if *install && len(pools) == 0 {
		fmt.Fprintln(stderr, "hostguard: -install needs at least one -pool")
		return 2
	}
	var r Report
	if *install {
		added, err := Install(pools)
		if err != nil {
			fmt.Fprintf(stderr, "hostguard: %v\n", err)
			return 1
		}
		for _, p := range pools {
			r.Pools = append(r.Pools, p.String())
		}
		for _, p := range added {
			r.Added = append(r.Added, p.String())
		}
	}
	addrs, bridges, err := interfaceAddrs()
	if err != nil {
		fmt.Fprintf(stderr, "hostguard: %v\n", err)
		return 1
	}
	for _, a := range addrs {
		r.Addrs = append(r.Addrs, a.String())
	}
	for _, a := range bridges {
		r.Bridges = append(r.Bridges, a.String())
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		fmt.Fprintf(stderr, "hostguard: %v\n", err)
		return 1
	}
	return 0
}

// HostAddrs lists the addresses of this network namespace's interfaces,
// sorted, without loopback and IPv6 link-local addresses (which the
// bundle never dials anyway).
func HostAddrs() ([]netip.Addr, error) {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	return usable(ifaddrs), nil
}

func usable(ifaddrs []net.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range ifaddrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || slices.Contains(out, ip) {
			continue
		}
		out = append(out, ip)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// ErrUnsupported says that this platform has no firewall the guard knows.
var ErrUnsupported = errors.New("the host guard runs on linux only")

// ParseReport reads the guard's output.
func ParseReport(b []byte) (Report, error) {
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("read the host guard's report: %w", err)
	}
	return r, nil
}

// engineBridgePrefix starts the name of the bridge the engine makes for
// each of its bridge networks but the default one (docker0).
const engineBridgePrefix = "br-"

// interfaceAddrs lists, in one pass over the interfaces (a bridge that
// the engine makes meanwhile is in both lists or in neither), the host's
// addresses (see usable) and those of them on the engine's bridges.
func interfaceAddrs() (addrs, bridges []netip.Addr, err error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, nil, fmt.Errorf("list the host's interfaces: %w", err)
	}
	var all []net.Addr
	for _, ifc := range ifaces {
		as, err := ifc.Addrs()
		if err != nil {
			continue // gone meanwhile
		}
		all = append(all, as...)
		if strings.HasPrefix(ifc.Name, engineBridgePrefix) {
			bridges = append(bridges, usable(as)...)
		}
	}
	return usable(all), bridges, nil
}

package bundle

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// defaultProcNet holds the bundle's routing tables. Inside its container
// they are the bundle's own: their gateways are the host's addresses on
// the bottle's networks (or routers past them).
const defaultProcNet = "/proc/net"

// maxRouteBytes bounds how much of a routing table is read.
const maxRouteBytes = 1 << 20

// routeGateways lists the gateways of the IPv4 and IPv6 routing tables in
// dir (route and ipv6_route, in the format of /proc/net). A missing table
// has none; a line that does not parse is skipped; a table that cannot be
// read is an error.
func routeGateways(dir string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, t := range []struct {
		name  string
		parse func(io.Reader) ([]netip.Addr, error)
	}{{"route", parseRoute}, {"ipv6_route", parseIPv6Route}} {
		path := filepath.Join(dir, t.name)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the bundle's routes: %w", err)
		}
		gws, err := t.parse(io.LimitReader(f, maxRouteBytes))
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("read the bundle's routes: %s: %w", path, err)
		}
		out = append(out, gws...)
	}
	return out, nil
}

// parseRoute reads /proc/net/route: a header line, then one route a line,
// whitespace-separated, the gateway third as 8 hex digits of the address
// in the host's byte order (little-endian on amd64 and arm64).
//
//	Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
//	eth0	00000000	010011AC	0003	0	0	0	00000000	0	0	0
func parseRoute(r io.Reader) ([]netip.Addr, error) {
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	col := 2
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first {
			for i, name := range f {
				if strings.EqualFold(name, "Gateway") {
					col = i
				}
			}
			continue
		}
		if len(f) <= col || len(f[col]) != 8 {
			continue
		}
		n, err := strconv.ParseUint(f[col], 16, 32)
		if err != nil || n == 0 {
			continue
		}
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], uint32(n))
		out = appendNew(out, netip.AddrFrom4(b))
	}
	return out, sc.Err()
}

// parseIPv6Route reads /proc/net/ipv6_route: no header, one route a line,
// the next hop fifth as 32 hex digits in network order.
//
//	00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
func parseIPv6Route(r io.Reader) ([]netip.Addr, error) {
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || len(f[4]) != 32 {
			continue
		}
		var b [16]byte
		if _, err := hex.Decode(b[:], []byte(f[4])); err != nil {
			continue
		}
		if ip := netip.AddrFrom16(b); !ip.IsUnspecified() {
			out = appendNew(out, ip.Unmap())
		}
	}
	return out, sc.Err()
}

func appendNew(list []netip.Addr, ip netip.Addr) []netip.Addr {
	for _, a := range list {
		if a == ip {
			return list
		}
	}
	return append(list, ip)
}

package bundle

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// littleEndian: /proc/net/route holds addresses in the host's byte order,
// and the samples below come from little-endian machines.
func littleEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the sample routing table is from a little-endian machine")
	}
}

func TestParseRoute(t *testing.T) {
	t.Parallel()
	littleEndian(t)
	tests := []struct {
		name, text string
		want       []string
	}{
		{"docker container", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
			"eth0\t00000000\t0100D50A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t0000D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
			"eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00F0FFFF\t0\t0\t0\n" +
			"eth1\t0000A9C0\t01F0A8C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n" +
			"eth2\t00000000\t0100D50A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n",
			[]string{"10.213.0.1", "192.168.240.1"}},
		{"no gateway", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
			"eth0\t0000D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", nil},
		{"empty", "", nil},
		{"gateway column elsewhere", "Gateway Iface\n010011AC eth0\n", []string{"172.17.0.1"}},
		{"garbage skipped", "Iface\tDestination\tGateway\n" +
			"eth0\t00000000\n" + // too short
			"eth0\t00000000\tZZZZZZZZ\n" + // not hex
			"eth0\t00000000\t0100000A0\n" + // 9 digits
			"eth0\t00000000\t-1000000\n" +
			"\n" +
			"eth0\t00000000\t010011AC\t0003\n", []string{"172.17.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseRoute(strings.NewReader(tt.text))
			if err != nil {
				t.Fatalf("parseRoute: %v", err)
			}
			checkAddrs(t, got, tt.want)
		})
	}
}

func TestParseIPv6Route(t *testing.T) {
	t.Parallel()
	text := "" +
		"fd000001000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000001000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth1\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000ffff0a000001 00000400 00000001 00000000 00000003     eth1\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd00000100000000000000000000000 00000400\n" + // 31 digits
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 zz000001000000000000000000000001 00000400\n" +
		"short line\n" +
		"ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000004 00000000 00000001     eth0\n"
	got, err := parseIPv6Route(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parseIPv6Route: %v", err)
	}
	checkAddrs(t, got, []string{"fd00:1::1", "fe80::1", "10.0.0.1"})
}

func TestRouteGateways(t *testing.T) {
	t.Parallel()
	littleEndian(t)
	got, err := routeGateways("testdata/proc-net")
	if err != nil {
		t.Fatalf("routeGateways: %v", err)
	}
	checkAddrs(t, got, []string{"10.1.0.1", "2001:db8::1:1"})
	got, err = routeGateways(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(got) != 0 {
		t.Fatalf("routeGateways(missing) = %v, %v; want none", got, err)
	}
}

func checkAddrs(t *testing.T, got []netip.Addr, want []string) {
	t.Helper()
	var g []string
	for _, a := range got {
		g = append(g, a.String())
	}
	if !slices.Equal(g, want) {
		t.Fatalf("gateways = %q, want %q", g, want)
	}
}

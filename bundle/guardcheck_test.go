package bundle

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The check knocks on each gateway of the routing table: one that answers
// (here loopback, with nothing on port 9: a reset) means the rule is not
// there. A table without gateways is an error, not a pass.
func TestCheckHostGuard(t *testing.T) {
	t.Parallel()
	if l, err := net.Listen("tcp", "127.0.0.1:9"); err == nil {
		l.Close() // port 9 is free here: a knock gets a reset
	}
	dir := t.TempDir()
	// 127.0.0.1 as a gateway, in the host's byte order (little-endian).
	route := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t0100007F\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
	if err := os.WriteFile(filepath.Join(dir, "route"), []byte(route), 0o644); err != nil {
		t.Fatal(err)
	}
	answered, err := CheckHostGuard(context.Background(), dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(answered) != 1 || answered[0].String() != "127.0.0.1" {
		t.Fatalf("answered %v, want the loopback gateway, which nothing drops", answered)
	}

	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "route"), []byte(strings.SplitAfter(route, "\n")[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := CheckHostGuard(context.Background(), empty, time.Second); err == nil || !slices.Equal(got, nil) {
		t.Fatalf("a table without gateways: %v, %v; want an error", got, err)
	}
}

package app

import (
	"net/netip"
	"slices"
	"testing"
)

// The host's addresses are kept per engine: another engine (or none known
// yet) loads nothing, and a save replaces what was there.
func TestHostCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	addrs := []netip.Addr{netip.MustParseAddr("172.17.0.1"), netip.MustParseAddr("192.0.2.2")}
	c := &hostCache{}
	c.SaveHostAddrs(addrs) // no engine yet: nothing written
	c.setEngine("engine-a")
	if _, ok := c.LoadHostAddrs(); ok {
		t.Fatal("loaded addresses that were never saved for this engine")
	}
	c.SaveHostAddrs(addrs)
	got, ok := c.LoadHostAddrs()
	if !ok || !slices.Equal(got, addrs) {
		t.Fatalf("LoadHostAddrs = %v, %v; want %v", got, ok, addrs)
	}
	other := &hostCache{}
	other.setEngine("engine-b")
	if got, ok := other.LoadHostAddrs(); ok {
		t.Fatalf("engine-b loaded engine-a's host addresses %v", got)
	}
	c.SaveHostAddrs(addrs[:1])
	if got, _ := c.LoadHostAddrs(); !slices.Equal(got, addrs[:1]) {
		t.Fatalf("after a new save, LoadHostAddrs = %v, want %v", got, addrs[:1])
	}
}

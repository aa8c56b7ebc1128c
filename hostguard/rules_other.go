//go:build !linux

package hostguard

import "net/netip"

// Install is not available off linux.
func Install([]netip.Prefix) ([]netip.Prefix, error) { return nil, ErrUnsupported }

// Uninstall is not available off linux.
func Uninstall() error { return ErrUnsupported }

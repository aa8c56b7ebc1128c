package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// rustUint parses like Rust's str::parse::<uN>, with its messages.
func rustUint(s string, bits int) (uint64, error) {
	if s == "" {
		return 0, errors.New("cannot parse integer from empty string")
	}
	for _, c := range strings.TrimPrefix(s, "+") {
		if c < '0' || c > '9' {
			return 0, errors.New("invalid digit found in string")
		}
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, bits)
	if err != nil {
		return 0, errors.New("number too large to fit in target type")
	}
	return n, nil
}

func checkUint(bits int) func(string) error {
	return func(s string) error { _, err := rustUint(s, bits); return err }
}

var (
	checkU8  = checkUint(8)
	checkU16 = checkUint(16)
	checkU32 = checkUint(32)
	checkU64 = checkUint(64)
)

// checkPort accepts HOST:GUEST or a single PORT, each a u16.
func checkPort(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) > 2 {
		return fmt.Errorf("invalid port mapping '%s': expected HOST:GUEST or PORT", s)
	}
	for _, p := range parts {
		if _, err := rustUint(p, 16); err != nil {
			return fmt.Errorf("invalid port '%s': %v", p, err)
		}
	}
	return nil
}

// parseCIDR follows smolvm's parse_cidr: IP/prefix or a bare IP (/32 for
// IPv4, /128 for IPv6), returned normalised.
func parseCIDR(s string) (string, error) {
	ipStr, prefix := s, -1
	if ip, pfx, ok := strings.Cut(s, "/"); ok {
		n, err := strconv.ParseUint(pfx, 10, 8)
		if err != nil {
			return "", fmt.Errorf("invalid prefix length in '%s': expected a number", s)
		}
		ipStr, prefix = ip, int(n)
	}
	addr, err := netip.ParseAddr(ipStr)
	if err != nil || addr.Zone() != "" {
		return "", fmt.Errorf("invalid CIDR '%s': expected format like 10.0.0.0/8 or 1.1.1.1", s)
	}
	switch {
	case prefix < 0 && addr.Is4():
		prefix = 32
	case prefix < 0:
		prefix = 128
	case addr.Is4() && prefix > 32:
		return "", fmt.Errorf("invalid CIDR '%s': IPv4 prefix must be 0-32", s)
	case prefix > 128:
		return "", fmt.Errorf("invalid CIDR '%s': IPv6 prefix must be 0-128", s)
	}
	return fmt.Sprintf("%s/%d", addr, prefix), nil
}

func checkCIDR(s string) error { _, err := parseCIDR(s); return err }

func checkKeyValue(what string) func(string) error {
	return func(s string) error {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return fmt.Errorf("invalid %s '%s': expected KEY=VALUE", what, s)
		}
		return nil
	}
}

func checkNetBackend(s string) error {
	if s == "tsi" || s == "virtio-net" {
		return nil
	}
	return errors.New("possible values: tsi, virtio-net")
}

// checkVolume accepts HOST:GUEST[:ro] with an absolute guest path.
func checkVolume(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("invalid volume '%s': expected HOST:GUEST[:ro]", s)
	}
	if !strings.HasPrefix(parts[1], "/") {
		return fmt.Errorf("invalid volume '%s': guest path must be absolute", s)
	}
	if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return fmt.Errorf("invalid volume '%s': unknown option '%s'", s, parts[2])
	}
	return nil
}

// envList keeps the K=V entries with a non-empty key and drops the rest
// silently, as smolvm's parse_env_list does.
func envList(entries []string) []string {
	out := []string{}
	for _, e := range entries {
		if k, _, ok := strings.Cut(e, "="); ok && k != "" {
			out = append(out, e)
		}
	}
	return out
}

var humanUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "nsec": time.Nanosecond,
	"us": time.Microsecond, "usec": time.Microsecond,
	"ms": time.Millisecond, "msec": time.Millisecond, "millis": time.Millisecond,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

var humanPart = regexp.MustCompile(`^([0-9]+)\s*([a-zA-Z]+)`)

// parseHumanDuration reads humantime syntax ("30s", "1m 30s", "2min").
func parseHumanDuration(s string) (time.Duration, error) {
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, errors.New("value was empty")
	}
	var total time.Duration
	for rest != "" {
		m := humanPart.FindStringSubmatch(rest)
		if m == nil {
			if _, err := strconv.ParseUint(rest, 10, 64); err == nil {
				return 0, errors.New("time unit needed, for example 30sec or 30s")
			}
			return 0, errors.New("expected number at 0")
		}
		unit, ok := humanUnits[m[2]]
		if !ok {
			return 0, fmt.Errorf("unknown time unit %q, supported units: ns, us, ms, sec, min, hours, days", m[2])
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		total += time.Duration(n) * unit
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	return total, nil
}

// checkTimeout is exec's --timeout parser: humantime, and not zero.
func checkTimeout(s string) error {
	d, err := parseHumanDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return errors.New("timeout must be greater than zero")
	}
	return nil
}

const maxNameLen = 128

// validateName applies smolvm's machine name rules.
func validateName(n string) error {
	switch {
	case n == "":
		return errors.New("machine name cannot be empty")
	case len(n) > maxNameLen:
		return fmt.Errorf("machine name too long: %d characters (max %d)", len(n), maxNameLen)
	case !isAlnum(n[0]):
		return errors.New("machine name must start with a letter or digit")
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !isAlnum(c) && c != '-' && c != '_' {
			return fmt.Errorf("machine name contains invalid character '%c': only letters, digits, '-' and '_' are allowed", c)
		}
	}
	switch {
	case strings.HasSuffix(n, "-"):
		return errors.New("machine name cannot end with '-'")
	case strings.Contains(n, "--"):
		return errors.New("machine name cannot contain '--'")
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// generateName is smolvm's generated form: "vm-" and 8 hex digits.
func generateName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "vm-" + hex.EncodeToString(b)
}

// truncate cuts s to max characters, ending in "..." when cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

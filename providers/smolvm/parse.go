package smolvm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseVersion reads the output of `smolvm --version` ("smolvm 1.9.3"),
// or a bare "1.9.3" (a leading "v" and a "-pre" or "+build" suffix are
// allowed and ignored).
func ParseVersion(out string) (Version, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	fields := strings.Fields(line)
	var s string
	switch {
	case len(fields) == 1:
		s = fields[0]
	case len(fields) >= 2 && fields[0] == "smolvm":
		s = fields[1]
	default:
		return Version{}, fmt.Errorf("unexpected smolvm version output %q", line)
	}
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("unexpected smolvm version %q", line)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return Version{}, fmt.Errorf("unexpected smolvm version %q", line)
		}
		n[i] = v
	}
	return Version{n[0], n[1], n[2]}, nil
}

// machine is the part of a `machine ls --json` (or `status --json`) record
// the provider reads. Fields that are null or absent stay zero: 0.8 has no
// labels, a machine made --from a pack has no image.
type machine struct {
	Name      string            `json:"name"`
	State     string            `json:"state"`
	Image     string            `json:"image"`
	CPUs      int               `json:"cpus"`
	MemoryMiB int               `json:"memory_mib"`
	PID       int               `json:"pid"`
	Labels    map[string]string `json:"labels"`
	// CreatedAt is in Unix seconds; 0 when this version does not say.
	CreatedAt int64 `json:"created_at"`
}

// parseMachines reads the output of `machine ls --json`: a JSON array,
// "[]" when there is nothing.
func parseMachines(out []byte) ([]machine, error) {
	out = bytes.TrimSpace(out)
	if len(out) == 0 || out[0] != '[' {
		return nil, fmt.Errorf("unexpected output of smolvm machine ls --json: %q", abbrev(out))
	}
	var ms []machine
	if err := json.Unmarshal(out, &ms); err != nil {
		return nil, fmt.Errorf("parse smolvm machine ls --json: %w", err)
	}
	for i := range ms {
		if ms[i].Name == "" {
			return nil, fmt.Errorf("parse smolvm machine ls --json: machine %d has no name", i)
		}
	}
	return ms, nil
}

// parseMachine reads the output of `machine status --name N --json`: one
// object.
func parseMachine(out []byte) (machine, error) {
	out = bytes.TrimSpace(out)
	var m machine
	if len(out) == 0 || out[0] != '{' {
		return m, fmt.Errorf("unexpected output of smolvm machine status --json: %q", abbrev(out))
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return m, fmt.Errorf("parse smolvm machine status --json: %w", err)
	}
	if m.Name == "" {
		return m, errors.New("parse smolvm machine status --json: no name")
	}
	return m, nil
}

func abbrev(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// errText is what smolvm said about a failed command; "" for errors that
// are not a *RunError.
func errText(err error) string {
	var re *RunError
	if !errors.As(err, &re) {
		return ""
	}
	return re.Stderr + "\n" + re.Stdout
}

// isNotFound: the machine does not exist ("vm not found: N").
func isNotFound(err error) bool { return strings.Contains(errText(err), "vm not found:") }

// isAlreadyExists: create of a name that is taken ("machine 'N' already
// exists", 1.9 adds "or is being created").
func isAlreadyExists(err error) bool { return strings.Contains(errText(err), "already exists") }

// isNotRunning: exec or cp on a machine that is not running ("machine 'N'
// is not running. Use ... first.").
func isNotRunning(err error) bool { return strings.Contains(errText(err), "is not running") }

// hypervisorProblem reports whether smolvm failed because it cannot run a
// VM on this host, and what to do about it.
func hypervisorProblem(err error) (hint string, ok bool) {
	t := errText(err)
	switch {
	case strings.Contains(t, "kvm not available"):
		return "load the KVM kernel module (modprobe kvm_intel or kvm_amd; enable virtualization in the firmware, or nested virtualization in a VM)", true
	case strings.Contains(t, "kvm permission denied"):
		return "add your user to the kvm group (sudo usermod -aG kvm $USER, then log in again) or fix the permissions of /dev/kvm", true
	case strings.Contains(t, "krun_start_enter returned: -22"):
		return "sign the smolvm binary with the com.apple.security.hypervisor entitlement (codesign --entitlements)", true
	}
	return "", false
}

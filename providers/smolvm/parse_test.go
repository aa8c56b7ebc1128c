package smolvm

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{string(readTestdata(t, "version-0.8.0.txt")), Version{0, 8, 0}, false},
		{string(readTestdata(t, "version-1.9.3.txt")), Version{1, 9, 3}, false},
		{"smolvm 1.10.0-rc.1\n", Version{1, 10, 0}, false},
		{"1.0.2", Version{1, 0, 2}, false},
		{"smolvm v1.2.3+abc", Version{1, 2, 3}, false},
		{"smolvm 1.9.3\nbuilt with love\n", Version{1, 9, 3}, false},
		{"", Version{}, true},
		{"smolvm", Version{}, true},
		{"docker 1.2.3", Version{}, true},
		{"smolvm 1.2", Version{}, true},
		{"smolvm 1.x.3", Version{}, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := ParseVersion(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseVersion(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestVersionCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b    Version
		cmp     int
		atLeast bool
	}{
		{v080, v102, -1, false},
		{v102, v102, 0, true},
		{v193, v180, 1, true},
		{Version{1, 10, 0}, v193, 1, true},
		{Version{2, 0, 0}, Version{1, 99, 99}, 1, true},
		{v101, v102, -1, false},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.cmp {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.cmp)
		}
		if got := tt.a.AtLeast(tt.b); got != tt.atLeast {
			t.Errorf("%v.AtLeast(%v) = %v, want %v", tt.a, tt.b, got, tt.atLeast)
		}
	}
	if s := v193.String(); s != "1.9.3" {
		t.Errorf("String = %q", s)
	}
}

func TestParseMachines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want string // name state image labels-count, one per machine
	}{
		{"ls-empty.json", ""},
		{"ls-0.8.0.json", "bottle-hello-agent running  0|bottle-other-agent stopped  0|dev created alpine 0"},
		{"ls-1.9.3.json", "bottle-hello-agent running /home/dev/.cache/bottle-apply/smolvm/images/5b2c1f0e8a7d6c4b3a291817161514131211100f0e0d0c0b0a09080706050403.tar 5|" +
			"bottle-other-agent stopped python:3.12 0|myvm unreachable alpine 1|bottle-forked-agent frozen ghcr.io/acme/base:1 5"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			ms, err := parseMachines(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprintf("%s %s %s %d", m.Name, m.State, m.Image, len(m.Labels)))
			}
			if g := strings.Join(got, "|"); g != tt.want {
				t.Errorf("got  %s\nwant %s", g, tt.want)
			}
		})
	}
	t.Run("fields", func(t *testing.T) {
		t.Parallel()
		ms, err := parseMachines(readTestdata(t, "ls-1.9.3.json"))
		if err != nil {
			t.Fatal(err)
		}
		m := ms[0]
		if m.CPUs != 2 || m.MemoryMiB != 1024 || m.PID != 41233 || m.Labels[bottle.LabelName] != "hello" || m.Labels[bottle.LabelRole] != "agent" ||
			m.CreatedAt != 1750000000 {
			t.Errorf("machine = %+v", m)
		}
	})
}

func TestParseMachinesRejectsOtherOutput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "No machines found\n", "{}", "[{\"state\": \"running\"}]", "[{"} {
		if ms, err := parseMachines([]byte(in)); err == nil {
			t.Errorf("parseMachines(%q) = %v, want an error", in, ms)
		}
	}
}

func TestParseMachine(t *testing.T) {
	t.Parallel()
	m, err := parseMachine(readTestdata(t, "status-1.9.3.json"))
	if err != nil || m.Name != "myvm" || m.State != "running" || m.Labels["owner"] != "exo" {
		t.Errorf("parseMachine = %+v, %v", m, err)
	}
	for _, in := range []string{"", "[]", "Machine 'myvm': running (PID: 1)", "{}"} {
		if _, err := parseMachine([]byte(in)); err == nil {
			t.Errorf("parseMachine(%q) should fail", in)
		}
	}
}

// Error texts as smolvm prints them (see the CLI reference).
const (
	errNotFound      = "vm not found: bottle-hello-agent"
	errExists08      = "config operation failed: create machine: machine 'bottle-hello-agent' already exists"
	errExists19      = "config operation failed: create machine: machine 'bottle-hello-agent' already exists or is being created"
	errNotRunning    = "agent operation failed: connect: machine 'bottle-hello-agent' is not running. Use 'smolvm machine start --name bottle-hello-agent' first."
	errKVMMissing    = "agent operation failed: start machine: kvm not available: KVM not available. Ensure KVM kernel module is loaded."
	errKVMPermission = "agent operation failed: start machine: kvm permission denied: Cannot access /dev/kvm"
	errMacEntitle    = "agent operation failed: start machine: krun_start_enter returned: -22"
	errBadState      = "invalid vm state: expected stopped, got Running"
)

func TestPredicates(t *testing.T) {
	t.Parallel()
	type want struct{ notFound, exists, notRunning, hypervisor bool }
	tests := []struct {
		name string
		err  error
		want want
	}{
		{"not found", smolErr(errNotFound), want{notFound: true}},
		{"already exists 0.8", smolErr(errExists08), want{exists: true}},
		{"already exists 1.9", smolErr(errExists19), want{exists: true}},
		{"not running", smolErr(errNotRunning), want{notRunning: true}},
		{"kvm missing", smolErr(errKVMMissing), want{hypervisor: true}},
		{"kvm permission", smolErr(errKVMPermission), want{hypervisor: true}},
		{"macOS entitlement", smolErr(errMacEntitle), want{hypervisor: true}},
		{"other", smolErr(errBadState), want{}},
		{"wrapped", fmt.Errorf("start machine x: %w", smolErr(errNotFound)), want{notFound: true}},
		{"not a RunError", errors.New(errNotFound), want{}},
		{"nil", nil, want{}},
		{"could not run", &RunError{Argv: []string{"smolvm"}, ExitCode: -1, Err: exec.ErrNotFound}, want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, hv := hypervisorProblem(tt.err)
			got := want{isNotFound(tt.err), isAlreadyExists(tt.err), isNotRunning(tt.err), hv}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHypervisorHints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		msg, hint string
	}{
		{errKVMMissing, "load the KVM kernel module"},
		{errKVMPermission, "add your user to the kvm group"},
		{errKVMPermission, "/dev/kvm"},
		{errMacEntitle, "com.apple.security.hypervisor entitlement"},
	}
	for _, tt := range tests {
		hint, ok := hypervisorProblem(smolErr(tt.msg))
		if !ok || !strings.Contains(hint, tt.hint) {
			t.Errorf("hypervisorProblem(%q) = %q, %v; want a hint with %q", tt.msg, hint, ok, tt.hint)
		}
	}
}

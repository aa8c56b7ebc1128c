package spec

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestGatewayAndBundleIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix          string
		gateway, bundle string
	}{
		{"192.168.240.0/24", "192.168.240.1", "192.168.240.2"},
		{"192.168.240.77/24", "192.168.240.1", "192.168.240.2"}, // masked first
		{"10.20.0.0/16", "10.20.0.1", "10.20.0.2"},
		{"172.30.8.8/29", "172.30.8.9", "172.30.8.10"},
	}
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.prefix)
		if got := GatewayIP(p).String(); got != tt.gateway {
			t.Errorf("GatewayIP(%s) = %s, want %s", p, got, tt.gateway)
		}
		if got := DefaultBundleIP(p).String(); got != tt.bundle {
			t.Errorf("DefaultBundleIP(%s) = %s, want %s", p, got, tt.bundle)
		}
	}
	if a := DefaultBundleIP(netip.Prefix{}); a.IsValid() {
		t.Errorf("DefaultBundleIP(invalid) = %s, want the zero Addr", a)
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in, want Spec
	}{
		{"empty", Spec{}, Spec{Backend: BackendDocker}},
		{"backend kept", Spec{Backend: BackendSmolvm}, Spec{Backend: BackendSmolvm}},
		{"bundle IP from subnet", Spec{Network: Network{Subnet: "10.9.0.0/16"}},
			Spec{Backend: BackendDocker, Network: Network{Subnet: "10.9.0.0/16", BundleIP: "10.9.0.2"}}},
		{"bundle IP kept", Spec{Network: Network{Subnet: "10.9.0.0/16", BundleIP: "10.9.8.7"}},
			Spec{Backend: BackendDocker, Network: Network{Subnet: "10.9.0.0/16", BundleIP: "10.9.8.7"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := Bottle{Spec: tt.in}
			b.Default()
			if !reflect.DeepEqual(b.Spec, tt.want) {
				t.Errorf("Default: got %+v, want %+v", b.Spec, tt.want)
			}
			b.Default()
			if !reflect.DeepEqual(b.Spec, tt.want) {
				t.Errorf("Default is not idempotent: got %+v", b.Spec)
			}
		})
	}
}

// The agent's limits: the spec's when set, else the defaults; the spec
// itself stays as written, so that its hash does not move.
func TestAgentLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		in           Agent
		memory, pids int
	}{
		{"defaults", Agent{}, DefaultAgentMemory, DefaultAgentPids},
		{"memory set", Agent{Memory: 512}, 512, DefaultAgentPids},
		{"pids set", Agent{Pids: 100}, DefaultAgentMemory, 100},
		{"both set", Agent{Memory: 65536, Pids: 100000}, 65536, 100000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := tt.in
			if got := a.MemoryLimit(); got != tt.memory {
				t.Errorf("MemoryLimit = %d, want %d", got, tt.memory)
			}
			if got := a.PidsLimit(); got != tt.pids {
				t.Errorf("PidsLimit = %d, want %d", got, tt.pids)
			}
			if !reflect.DeepEqual(a, tt.in) {
				t.Errorf("the limits changed the spec: %+v", a)
			}
		})
	}
	if DefaultAgentMemory != 8<<10 || DefaultAgentPids != 4096 {
		t.Errorf("defaults %d MiB, %d pids; README's upgrade notes say 8 GiB and 4096", DefaultAgentMemory, DefaultAgentPids)
	}
}

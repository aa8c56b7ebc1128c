package smolvm

import (
	"maps"
	"slices"
	"strings"
)

// Ownership labels, put on machines from smolvm 1.8 on. The keys and the
// inputs encoding are those of the docker provider (providers/docker
// labels.go), duplicated so that the providers stay independent.
const (
	labelName    = "io.bottle-apply.name"
	labelRole    = "io.bottle-apply.role"
	labelHash    = "io.bottle-apply.config-hash"
	labelInputs  = "io.bottle-apply.inputs"
	labelVersion = "io.bottle-apply.version"
)

// ProviderName is the provider's name in resource IDs (smolvm-machine:B/agent).
const ProviderName = "smolvm"

// kindMachine is the kind of the one resource this provider manages.
const kindMachine = "machine"

// roleAgent is the role of a bottle's agent machine.
const roleAgent = "agent"

// The docker provider's resources an agent machine waits for.
const (
	dockerProvider    = "docker"
	dockerNetwork     = "network"
	dockerContainer   = "container"
	dockerRoleNetwork = "internal"
	dockerRoleBundle  = "bundle"
)

// proxyPort is the port of the bundle's egress proxy (the docker
// provider's ProxyPort).
const proxyPort = 8888

// namePrefix is reserved: before 1.8, machines cannot be labelled, and a
// machine is bottle-apply's only if it bears this prefix and a state record.
const namePrefix = "bottle-"

// machineName is a bottle's machine: bottle-NAME-ROLE, like the docker
// provider's resource names.
func machineName(bottle, role string) string { return namePrefix + bottle + "-" + role }

// encodeInputs renders per-input digests as a label value: "a=123,b=456".
func encodeInputs(in map[string]string) string {
	keys := slices.Sorted(maps.Keys(in))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + in[k]
	}
	return strings.Join(parts, ",")
}

func decodeInputs(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

package smolvm

import "github.com/bottle-apply/bottle-apply/reconcile"

// Ownership labels, put on machines from smolvm 1.8 on: the same as every
// provider's.
const (
	labelName    = reconcile.LabelName
	labelRole    = reconcile.LabelRole
	labelHash    = reconcile.LabelHash
	labelInputs  = reconcile.LabelInputs
	labelVersion = reconcile.LabelVersion
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

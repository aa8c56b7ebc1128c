package smolvm

// ProviderName is the provider's name in resource IDs (smolvm-machine:B/agent).
const ProviderName = "smolvm"

// KindMachine is the kind of an agent machine; kindMachine within the
// package.
const (
	KindMachine = "machine"
	kindMachine = KindMachine
)

// The docker provider's resources an agent machine waits for: the bottle's
// network and bundle, which the docker provider makes.
const (
	dockerProvider  = "docker"
	dockerNetwork   = "network"
	dockerContainer = "container"
)

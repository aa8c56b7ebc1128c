package smolvm

// ProviderName is the provider's name in resource IDs (smolvm-machine:B/agent).
const ProviderName = "smolvm"

// kindMachine is the kind of the one resource this provider manages.
const kindMachine = "machine"

// The docker provider's resources an agent machine waits for: the bottle's
// network and bundle, which the docker provider makes.
const (
	dockerProvider  = "docker"
	dockerNetwork   = "network"
	dockerContainer = "container"
)

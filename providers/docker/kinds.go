package docker

// Resource kinds, as they appear in resource IDs (docker-network:...).
const (
	KindNetwork   = "network"
	KindContainer = "container"
)

// OptionInhibitIPv4 is the bridge driver's option that leaves the bridge
// without an address on the host.
const OptionInhibitIPv4 = "com.docker.network.bridge.inhibit_ipv4"

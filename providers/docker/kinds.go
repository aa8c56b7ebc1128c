package docker

// Resource kinds, as they appear in resource IDs (docker-network:...).
const (
	KindNetwork   = "network"
	KindContainer = "container"
	// KindVolume is a named volume of a bottle (spec.agent.volumes): its
	// role is the volume's name in the spec.
	KindVolume = "volume"
)

// LabelUser is on an agent that sets spec.agent.user: its numeric
// "uid:gid", so that exec and cp know it without an inspect. It is not an
// ownership label and not part of any hash (the "user" input is).
const LabelUser = "io.bottle-apply.user"

// OptionInhibitIPv4 is the bridge driver's option that leaves the bridge
// without an address on the host.
const OptionInhibitIPv4 = "com.docker.network.bridge.inhibit_ipv4"

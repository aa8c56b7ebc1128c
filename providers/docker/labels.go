package docker

import "github.com/bottle-apply/bottle-apply/reconcile"

// Labels put on every resource bottle-apply creates. A resource without
// LabelName, or with an empty LabelHash, is not ours and is never touched.
const (
	LabelName    = reconcile.LabelName
	LabelRole    = reconcile.LabelRole
	LabelHash    = reconcile.LabelHash
	LabelInputs  = reconcile.LabelInputs
	LabelVersion = reconcile.LabelVersion
)

// Roles of a docker-backend bottle's resources.
const (
	RoleInternal = "internal" // the bottle's network with no route out
	RoleEgress   = "egress"   // the bundle's way out
	RoleBundle   = "bundle"
	RoleAgent    = "agent"
)

// Resource kinds, as they appear in resource IDs (docker-network:...).
const (
	KindNetwork   = "network"
	KindContainer = "container"
)

// ProxyPort is the port of the bundle's egress proxy that the agent's
// HTTP_PROXY points at.
const ProxyPort = 8888

// DNSPort is the bundle's DNS daemon's port.
const DNSPort = 53

// OptionInhibitIPv4 is the bridge driver's option that leaves the bridge
// without an address on the host.
const OptionInhibitIPv4 = "com.docker.network.bridge.inhibit_ipv4"

// ResourceName is the engine name of a bottle's resource: bottle-NAME-ROLE.
func ResourceName(bottle, role string) string { return "bottle-" + bottle + "-" + role }

// Package bottle is the provider-neutral model of a bottle: what every
// backend agrees on. It names a bottle's parts (roles, resource names), the
// ports its bundle serves, the labels that make a resource bottle-apply's
// (and the rule that says so), and where automatic subnets come from.
//
// It imports spec only: providers translate a bottle into their own
// resources, reconcile plans over those.
package bottle

import (
	"fmt"
	"regexp"
)

// Labels put on every resource bottle-apply creates, where its backend has
// labels. A resource without LabelName, LabelRole and a non-empty LabelHash
// is not bottle-apply's and is never touched.
const (
	LabelName    = "io.bottle-apply.name"
	LabelRole    = "io.bottle-apply.role"
	LabelHash    = "io.bottle-apply.config-hash"
	LabelInputs  = "io.bottle-apply.inputs"
	LabelVersion = "io.bottle-apply.version"
	// LabelSet names the spec set a bottle was applied with (--set): a
	// prune of that set deletes the set's bottles that left the specs.
	// It is in no config hash: adding it replaces nothing.
	LabelSet = "io.bottle-apply.set"
)

// Owned is the rule that makes a resource bottle-apply's: it names a
// bottle, a role and a config hash (in its labels, or in the record smolvm
// keeps where a machine cannot be labelled). Nothing else is ever touched.
func Owned(bottleName, role, hash string) bool {
	return bottleName != "" && role != "" && hash != ""
}

// Labels are the ownership labels of a bottle's resource: inputs is the
// encoded digest per input (reconcile.EncodeInputs), version bottle-apply's
// (for humans; it is in no hash).
func Labels(bottleName, role, hash, inputs, version string) map[string]string {
	return map[string]string{
		LabelName: bottleName, LabelRole: role, LabelHash: hash,
		LabelInputs: inputs, LabelVersion: version,
	}
}

// setName is a label value as docker and kubernetes both take it: at most
// 63 characters, alphanumerics with - _ . inside.
var setName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// CheckSet says what is wrong with a spec set's name, if anything: it is
// a label value on every backend.
func CheckSet(name string) error {
	if !setName.MatchString(name) {
		return fmt.Errorf("spec set %q: want at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (a label value)", name)
	}
	return nil
}

// WithSet adds the spec set label to labels when set is not empty, and
// returns labels.
func WithSet(labels map[string]string, set string) map[string]string {
	if set != "" {
		labels[LabelSet] = set
	}
	return labels
}

// Roles of a bottle's resources.
const (
	RoleInternal = "internal" // the bottle's network with no route out
	RoleEgress   = "egress"   // the bundle's way out
	RoleBundle   = "bundle"
	RoleAgent    = "agent"
)

// ProxyPort is the port of the bundle's egress proxy that the agent's
// HTTP_PROXY points at.
const ProxyPort = 8888

// DNSPort is the bundle's DNS daemon's port.
const DNSPort = 53

// NamePrefix starts the name of every resource of a bottle. It is
// reserved: where a backend cannot label (smolvm before 1.8), a resource is
// bottle-apply's only if it bears this prefix and a record of ours.
const NamePrefix = "bottle-"

// ResourceName is the engine name of a bottle's resource: bottle-NAME-ROLE.
func ResourceName(bottle, role string) string { return NamePrefix + bottle + "-" + role }

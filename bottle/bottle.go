package bottle

import (
	"slices"

	"github.com/bottle-apply/bottle-apply/spec"
)

// Bottle is a bottle ready to be translated: its spec as declared, and what
// was read or chosen for it at apply time. The spec is never changed:
// choices go into Network, secret values into Secrets.
type Bottle struct {
	spec.Bottle
	// Network is spec.network with the choices that providers make in
	// their Resolve step filled in: the subnets and the bundle's address.
	Network spec.Network
	// Secrets are the values of spec.agent.secretEnv, sorted by name, once
	// read (package secret does it); printed with their values redacted.
	Secrets []Secret
}

// New returns the bottle of a spec, with nothing resolved yet.
func New(s spec.Bottle) Bottle {
	b := Bottle{Bottle: s, Network: s.Spec.Network}
	b.Network.AllowCIDRs = slices.Clone(s.Spec.Network.AllowCIDRs)
	return b
}

// NewAll returns the bottles of specs, in their order.
func NewAll(specs []spec.Bottle) []Bottle {
	out := make([]Bottle, len(specs))
	for i := range specs {
		out[i] = New(specs[i])
	}
	return out
}

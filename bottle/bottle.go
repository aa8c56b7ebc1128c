package bottle

import (
	"fmt"
	"slices"
	"sort"

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

// ProxyURL is the bundle's egress proxy as the agent's HTTP(S)_PROXY names
// it.
func (b *Bottle) ProxyURL() string {
	return fmt.Sprintf("http://%s:%d", b.Network.BundleIP, ProxyPort)
}

// AgentEnv is the agent's environment, sorted: spec.agent.env, the secrets'
// values, and the proxy variables pointing at the bundle (with loopback
// exempt). It holds secret values: it goes to the agent and nowhere else.
func (b *Bottle) AgentEnv() []string {
	a := &b.Spec.Agent
	proxy := b.ProxyURL()
	env := make([]string, 0, len(a.Env)+len(b.Secrets)+6)
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	for _, s := range b.Secrets {
		env = append(env, s.Name+"="+s.Value)
	}
	env = append(env, "HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy, "http_proxy="+proxy, "https_proxy="+proxy,
		"NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1")
	sort.Strings(env)
	return env
}

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
	// Host is what the bundle must never dial, whatever spec.network.allowCIDRs
	// says: providers fill it in their Resolve step.
	Host Host
	// Secrets are the values of spec.agent.secretEnv, sorted by name, once
	// read (package secret does it); printed with their values redacted.
	Secrets []Secret
	// Files are the contents of spec.agent.files, in the spec's order,
	// once read (package secret does it); printed with their contents
	// redacted.
	Files []File
	// Credentials are the values of spec.bundle.egress.credentials, in the
	// spec's order, once read (package secret does it); printed with their
	// values redacted. They go to the bundle alone.
	Credentials []Credential
	// Trust is the PEM of spec.bundle.egress.trust's files, joined, once
	// read and checked (package secret), and TrustDigest its keyed hash.
	Trust       []byte
	TrustDigest string
	// CA is the bottle's certificate authority when it has credentials
	// (package ca makes and keeps it); nil otherwise.
	CA *CA
	// Set is the spec set the bottle is applied with (--set), recorded in
	// LabelSet on its resources; "" is none, or the one its resources
	// already carry (reconcile fills it in).
	Set string
}

// Host is the engine's host as a bundle must see it: somewhere it never
// connects to.
type Host struct {
	// Denied are CIDRs the bundle never dials: the subnet pool, which
	// holds the bottles' networks. The bundle's egress subnet is the exception, but for its gateway: the
	// bundle's way out, where a test's stand-in for the internet may sit.
	Denied []string
	// Addrs are the host's interface addresses: every bridge's gateway,
	// its LAN and public addresses, as the host guard last saw them.
	Addrs []string
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

// NodeUseEnvProxy makes Node's fetch and http honour HTTP(S)_PROXY (Node
// 22.21+ and 24.5+; older ones ignore it), which they otherwise do not:
// coding agents are Node programs, and without it their requests go
// straight out, where the bottle lets nothing through, instead of to the
// proxy.
const NodeUseEnvProxy = "NODE_USE_ENV_PROXY"

// AgentEnv is the agent's environment, sorted: spec.agent.env, the secrets'
// values, the credentials' placeholders and CA variables (CredentialEnv),
// the proxy variables pointing at the bundle (with loopback
// exempt), and NODE_USE_ENV_PROXY=1 unless the spec sets it (to anything,
// "0" and "" included). It holds secret values: it goes to the agent and
// nowhere else.
func (b *Bottle) AgentEnv() []string {
	a := &b.Spec.Agent
	proxy := b.ProxyURL()
	env := make([]string, 0, len(a.Env)+len(b.Secrets)+7)
	_, nodeSet := a.Env[NodeUseEnvProxy]
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	for _, s := range b.Secrets {
		env = append(env, s.Name+"="+s.Value)
		nodeSet = nodeSet || s.Name == NodeUseEnvProxy
	}
	env = append(env, b.CredentialEnv()...)
	env = append(env, "HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy, "http_proxy="+proxy, "https_proxy="+proxy,
		"NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1")
	if !nodeSet {
		env = append(env, NodeUseEnvProxy+"=1")
	}
	sort.Strings(env)
	return env
}

// DNSLimitsEnv is what the bundle is told of spec.bundle.egress.dns, as
// K=V: only the limits the spec sets (the bundle knows the defaults).
func DNSLimitsEnv(l spec.EgressDNS) []string {
	var env []string
	for _, v := range []struct {
		name  string
		value int
	}{
		{"BOTTLE_DNS_MAX_NAME_LENGTH", l.MaxNameLength},
		{"BOTTLE_DNS_MAX_LABEL_LENGTH", l.MaxLabelLength},
		{"BOTTLE_DNS_NEW_NAMES_PER_MINUTE", l.NewNamesPerMinute},
	} {
		if v.value != 0 {
			env = append(env, fmt.Sprintf("%s=%d", v.name, v.value))
		}
	}
	return env
}

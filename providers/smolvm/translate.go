package smolvm

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// machineConfig is what the provider needs to create a bottle's machine.
type machineConfig struct {
	Name   string
	Bottle string
	// Image is the spec's reference; how it reaches smolvm (an archive or
	// a pack) is chosen at apply time, by smolvm version and by what the
	// local Docker engine has.
	Image      string
	Cmd        []string
	Workdir    string
	Env        []string // sorted K=V, the proxy variables and secrets included
	AllowCIDRs []string // the bundle's /32 first
	CPUs       int      // 0: smolvm's default
	MemoryMiB  int      // the spec's, else spec.DefaultAgentMemory
	Labels     map[string]string
	Record     record
	// Secrets are the values of the secrets in Env, which no error may
	// show (see redactSecrets); nil without secrets.
	Secrets []string
}

func dockerID(kind, bottleName, role string) string {
	r := reconcile.Resource{Provider: dockerProvider, Kind: kind, Bottle: bottleName, Role: role}
	return r.ID()
}

// translate turns one resolved smolvm bottle (bundle IP filled in) into its
// agent machine. It is pure; route is the image route to show, if known.
func translate(b *bottle.Bottle, version, route string) (reconcile.Resource, error) {
	name := b.Metadata.Name
	n := &b.Network
	if !b.SecretsResolved() {
		return reconcile.Resource{}, fmt.Errorf("internal: bottle %s: the secrets of spec.agent.secretEnv were not read", name)
	}
	bundleIP, err := netip.ParseAddr(n.BundleIP)
	if err != nil || !bundleIP.Is4() {
		return reconcile.Resource{}, fmt.Errorf("internal: bottle %s has no resolved bundle IP (%q)", name, n.BundleIP)
	}
	// The machine may reach the bundle (its proxy and DNS) and the extra
	// ranges, nothing else.
	cidrs := append([]string{netip.PrefixFrom(bundleIP, 32).String()}, n.AllowCIDRs...)
	a := &b.Spec.Agent
	f := reconcile.Fragment{
		reconcile.In("image", a.Image), reconcile.In("command", a.Command), reconcile.In("workdir", a.Workdir), reconcile.In("env", a.Env),
		reconcile.In("allowCIDRs", cidrs),
	}
	// Like the docker provider's agent: sizes enter the hash only when set.
	if a.CPUs != 0 {
		f = append(f, reconcile.In("cpus", a.CPUs))
	}
	if a.Memory != 0 {
		f = append(f, reconcile.In("memory", a.Memory))
	}
	// Secrets enter as their keyed digests, never their values; like the
	// sizes, only when there are some.
	if len(b.Secrets) > 0 {
		f = append(f, reconcile.In("secretEnv", b.SecretDigests()))
	}
	// Always there, unlike the sizes: every machine must get the defaults,
	// so every machine made before them is replaced once.
	f = append(f, reconcile.In("defaults", defaults))
	h, inputs := f.Hash()
	r := reconcile.Resource{
		Provider: ProviderName, Kind: kindMachine, Bottle: name, Role: bottle.RoleAgent,
		Name: bottle.ResourceName(name, bottle.RoleAgent), Hash: h, Inputs: inputs,
		DependsOn: []string{
			dockerID(dockerNetwork, name, bottle.RoleInternal),
			dockerID(dockerContainer, name, bottle.RoleBundle),
		},
		Summary: map[string]string{"image": a.Image, "allow": strings.Join(cidrs, ","), "platform": machinePlatform},
		Keeps:   "the bottle's networks and bundle",
		// smolvm machine delete drops the machine's disk with it.
		Discards: "the machine's processes, and every file written in it",
	}
	if route != "" {
		r.Summary["route"] = route
	}

	// The environment's proxy address derives from the bundle IP, which
	// the allowCIDRs input covers. The secrets' values are kept to redact
	// them from errors.
	var secrets []string
	for _, s := range b.Secrets {
		secrets = append(secrets, s.Value)
	}
	rec := record{Name: r.Name, Bottle: name, Role: bottle.RoleAgent, Hash: h, Inputs: inputs, Version: version}
	r.Config = machineConfig{
		Name: r.Name, Bottle: name, Image: a.Image, Cmd: slices.Clone(a.Command), Workdir: a.Workdir,
		Env: b.AgentEnv(), AllowCIDRs: cidrs, CPUs: a.CPUs, MemoryMiB: a.MemoryLimit(),
		Labels: bottle.Labels(name, bottle.RoleAgent, h, reconcile.EncodeInputs(inputs), version),
		Record: rec, Secrets: secrets,
	}
	return r, nil
}

// defaults names the version of what bottle-apply gives a machine that its
// spec leaves out: raising it replaces every machine, and the plan says
// "defaults changed". Version 1: the memory (spec.DefaultAgentMemory),
// passed to smolvm rather than left to its own default, which differs
// between versions and front ends; and NODE_USE_ENV_PROXY=1 in the env
// (bottle.AgentEnv). smolvm has no process limit: the docker agent's
// default pids limit has no counterpart here.
const defaults = 1

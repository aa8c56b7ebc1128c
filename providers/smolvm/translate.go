package smolvm

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
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
	// Mounts are spec.agent.volumes, in the spec's order.
	Mounts []mount
	// User is spec.agent.user as uid:gid; "" for the image's own user.
	User string
	// Files are written into the machine once it runs, after each create.
	Files []bottle.File
	// CACert is the bottle's CA certificate, given to a machine with
	// credentials with its files (AgentCAFile, and joined to its image's
	// own CA bundle in AgentCABundle).
	CACert []byte
}

// mount is one -v of a machine: a host directory or a named volume (whose
// directory the provider knows) at Target.
type mount struct {
	Host     string // a host directory's resolved path
	Volume   string // or a named volume of the bottle
	Target   string
	ReadOnly bool
}

// labelUser carries spec.agent.user (uid:gid) on a machine that sets it,
// so that exec and cp know it without the spec. Before smolvm 1.8 the
// record holds it.
const labelUser = "io.bottle-apply.user"

// labelImageID carries the content ID (the local Docker engine's image ID)
// that a machine's archive or pack was made of, so that a rebuilt image
// replaces it; none for an image from a registry. Before smolvm 1.8 the
// record holds it.
const labelImageID = "io.bottle-apply.image-id"

// volumeInput is the hash input of one mount: what the machine sees.
// AllowSensitive changes nothing in the machine and is left out.
type volumeInput struct {
	Source   string `json:"source"` // a host directory's resolved path, or a volume's name
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
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
	if !b.FilesResolved() {
		return reconcile.Resource{}, fmt.Errorf("internal: bottle %s: the files of spec.agent.files were not read", name)
	}
	if !b.CredentialsResolved() {
		return reconcile.Resource{}, fmt.Errorf("internal: bottle %s: the credentials of spec.bundle.egress.credentials were not read", name)
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
	// The workspace inputs, each only when set, so that a machine without
	// them keeps its hash. Files enter as their keyed digests, never their
	// content.
	mounts, err := translateMounts(b)
	if err != nil {
		return reconcile.Resource{}, err
	}
	if len(mounts) > 0 {
		in := make([]volumeInput, len(mounts))
		for i, m := range mounts {
			in[i] = volumeInput{Source: m.Host + m.Volume, Target: m.Target, ReadOnly: m.ReadOnly}
		}
		f = append(f, reconcile.In("volumes", in))
	}
	user, err := normalUser(a.User)
	if err != nil {
		return reconcile.Resource{}, fmt.Errorf("internal: bottle %s: spec.agent.user: %w", name, err)
	}
	if user != "" {
		f = append(f, reconcile.In("user", user))
	}
	if len(b.Files) > 0 {
		f = append(f, reconcile.In("files", b.FileDigests()))
	}
	// As the docker provider's agent: the CA and the placeholders, never
	// the credentials' values, so that rotating one replaces the bundle
	// alone.
	if b.CA != nil {
		f = append(f, reconcile.In("credentialCA", b.CA.Fingerprint))
		if env := b.CredentialEnv(); len(env) > 0 {
			f = append(f, reconcile.In("credentialEnv", env))
		}
	}
	// Always there, unlike the sizes: every machine must get the defaults,
	// so every machine made before them is replaced once.
	f = append(f, reconcile.In("defaults", defaults))
	h, inputs := f.Hash()
	r := reconcile.Resource{
		Provider: ProviderName, Kind: kindMachine, Bottle: name, Role: bottle.RoleAgent,
		Name: bottle.ResourceName(name, bottle.RoleAgent), Hash: h, Inputs: inputs, Set: b.Set,
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
	for _, v := range translateVolumes(b, user, version) {
		r.DependsOn = append(r.DependsOn, v.ID())
	}
	if len(mounts) > 0 {
		var kept []string
		for _, m := range mounts {
			if m.Volume != "" {
				kept = append(kept, "volume "+m.Volume+" at "+m.Target)
			} else {
				kept = append(kept, m.Host+" at "+m.Target)
			}
		}
		r.Keeps += "; " + strings.Join(kept, ", ")
		r.Discards = "the machine's processes, and every file written in it outside " + strings.Join(targets(mounts), ", ")
	}
	if len(b.Files) > 0 {
		r.Discards += " (spec.agent.files are written again)"
	}
	if user != "" {
		r.Summary["user"] = user
	}

	// The environment's proxy address derives from the bundle IP, which
	// the allowCIDRs input covers. The secrets' values are kept to redact
	// them from errors.
	var secrets []string
	for _, s := range b.Secrets {
		secrets = append(secrets, s.Value)
	}
	rec := record{Name: r.Name, Bottle: name, Role: bottle.RoleAgent, Hash: h, Inputs: inputs, Version: version, User: user, Set: b.Set}
	labels := bottle.WithSet(bottle.Labels(name, bottle.RoleAgent, h, reconcile.EncodeInputs(inputs), version), b.Set)
	if user != "" {
		labels[labelUser] = user
	}
	r.Config = machineConfig{
		Name: r.Name, Bottle: name, Image: a.Image, Cmd: slices.Clone(a.Command), Workdir: a.Workdir,
		Env: b.AgentEnv(), AllowCIDRs: cidrs, CPUs: a.CPUs, MemoryMiB: a.MemoryLimit(),
		Labels: labels, Record: rec, Secrets: secrets,
		Mounts: mounts, User: user, Files: slices.Clone(b.Files),
	}
	if b.CA != nil {
		cfg := r.Config.(machineConfig)
		cfg.CACert = b.CA.Cert
		r.Config = cfg
	}
	return r, nil
}

// translateMounts reads spec.agent.volumes. A host directory must have
// been resolved (spec.Load does it) and, like every -v source, hold no
// colon: smolvm splits HOST:GUEST[:ro] on colons.
func translateMounts(b *bottle.Bottle) ([]mount, error) {
	var out []mount
	for i, v := range b.Spec.Agent.Volumes {
		m := mount{Target: v.Target, ReadOnly: v.ReadOnly}
		if v.Named() {
			m.Volume = v.Source
		} else {
			if v.HostPath == "" {
				return nil, fmt.Errorf("internal: bottle %s: spec.agent.volumes[%d]: host directory %s was not resolved", b.Metadata.Name, i, v.Source)
			}
			m.Host = v.HostPath
		}
		if strings.Contains(m.Host, ":") || strings.Contains(m.Target, ":") {
			return nil, fmt.Errorf("bottle %s: spec.agent.volumes[%d]: smolvm cannot mount a path that holds a colon (%s:%s)",
				b.Metadata.Name, i, v.Source, v.Target)
		}
		out = append(out, m)
	}
	return out, nil
}

func targets(ms []mount) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Target
	}
	return out
}

// normalUser writes a spec's uid[:gid] as uid:gid ("" stays "").
func normalUser(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	uid, gid, err := spec.ParseUser(s)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d", uid, gid), nil
}

// volumeArgs are the -v values of a machine's mounts: HOST:GUEST[:ro],
// with a named volume's data directory (dataDir) as its host side.
func volumeArgs(ms []mount, dataDir func(volume string) string) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		host := m.Host
		if m.Volume != "" {
			host = dataDir(m.Volume)
		}
		v := host + ":" + m.Target
		if m.ReadOnly {
			v += ":ro"
		}
		out = append(out, v)
	}
	return out
}

// defaults names the version of what bottle-apply gives a machine that its
// spec leaves out: raising it replaces every machine, and the plan says
// "defaults changed". Version 1: the memory (spec.DefaultAgentMemory),
// passed to smolvm rather than left to its own default, which differs
// between versions and front ends; and NODE_USE_ENV_PROXY=1 in the env
// (bottle.AgentEnv). smolvm has no process limit: the docker agent's
// default pids limit has no counterpart here.
const defaults = 1

package docker

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// networkConfig is what the provider needs to create a network.
type networkConfig struct {
	Name     string
	Internal bool
	Subnet   string // empty: the engine chooses
	Gateway  string
	// Options are the bridge driver's options.
	Options map[string]string
	Labels  map[string]string
}

// endpoint attaches a container to a network, at a fixed IP when set.
type endpoint struct {
	Network string
	IP      string
}

// containerConfig is what the provider needs to create a container.
type containerConfig struct {
	Name     string
	Image    string
	Builtin  bool // the image is the built-in bundle image, made locally
	Cmd      []string
	Env      []string // sorted K=V
	Workdir  string
	Hostname string
	Init     bool
	// NanoCPUs and MemoryBytes limit the container; zero is no limit.
	NanoCPUs    int64
	MemoryBytes int64
	// DNS are the resolvers the engine's embedded resolver forwards to.
	DNS             []string
	Sysctls         map[string]string
	CapAdd, CapDrop []string
	ReadonlyRootfs  bool
	NoNewPrivileges bool
	PidsLimit       int64 // 0: none
	LogConfig       container.LogConfig
	Networks        []endpoint // the first is the primary network
	Labels          map[string]string

	// The agent's workspace. User is the numeric "uid:gid" the command
	// runs as ("" is the image's own user); UID and GID are its parts.
	User     string
	UID, GID int
	// Mounts are the host directories (binds) and named volumes.
	Mounts []mount.Mount
	// Volumes are the named volumes among Mounts, by target: the root of
	// one this provider made in this run is given to User.
	Volumes []volumeMount
	// Files are written into the container between its create and its
	// start. Their content is never logged.
	Files []bottle.File
	// CACert is the bottle's CA certificate, given to an agent with
	// credentials (in AgentCAFile, and joined to its image's own CA bundle
	// in AgentCABundle) between its create and its start.
	CACert []byte
	// Secrets are the bundle's secret files (bottle.BundleSecretsFile),
	// copied into its own volume at bottle.BundleSecretsDir between its
	// create and its start: never in its environment, where an inspect
	// would show them.
	Secrets []bottle.File
}

// volumeMount is a named volume of the agent and where it is mounted.
type volumeMount struct {
	Name, Target string
	ReadOnly     bool
}

// volumeConfig is what the provider needs to create a named volume.
type volumeConfig struct {
	Name   string
	Labels map[string]string
}

func resourceID(bottleName, kind, role string) string {
	r := reconcile.Resource{Provider: ProviderName, Kind: kind, Bottle: bottleName, Role: role}
	return r.ID()
}

func newResource(b *bottle.Bottle, kind, role string, f reconcile.Fragment) reconcile.Resource {
	h, inputs := f.Hash()
	return reconcile.Resource{
		Provider: ProviderName, Kind: kind, Bottle: b.Metadata.Name, Role: role,
		Name: bottle.ResourceName(b.Metadata.Name, role), Hash: h, Inputs: inputs, Set: b.Set,
	}
}

func labels(r *reconcile.Resource, version string) map[string]string {
	return bottle.WithSet(bottle.Labels(r.Bottle, r.Role, r.Hash, reconcile.EncodeInputs(r.Inputs), version), r.Set)
}

// translate turns one resolved bottle (subnet and bundle IP filled in) into
// the docker resources it needs, one pure builder per role: the two
// networks, the bundle and, on the docker backend, the agent.
func translate(b *bottle.Bottle, bundleImage, version string) []reconcile.Resource {
	at := placeOf(b)
	out := []reconcile.Resource{
		internalNetwork(b, at, version),
		egressNetwork(b, at, version),
		bundleContainer(b, at, bundleImage, version),
	}
	if b.Spec.Backend == spec.BackendDocker {
		// The smolvm provider owns the volumes of a smolvm agent.
		out = append(out, agentVolumes(b, version)...)
		out = append(out, agentContainer(b, at, version))
	}
	explainReplace(b, out)
	return out
}

// agentVolumes are the bottle's named volumes, one for each distinct name
// among spec.agent.volumes. A volume holds the user's work: it is
// persistent, never replaced, and its hash never changes.
func agentVolumes(b *bottle.Bottle, version string) []reconcile.Resource {
	var out []reconcile.Resource
	seen := map[string]bool{}
	for _, v := range b.Spec.Agent.Volumes {
		if !v.Named() || seen[v.Source] {
			continue
		}
		seen[v.Source] = true
		r := newResource(b, KindVolume, v.Source, reconcile.Fragment{reconcile.In("volume", v.Source)})
		r.Name = bottle.VolumeName(b.Metadata.Name, v.Source)
		r.Persistent = true
		r.Config = volumeConfig{Name: r.Name, Labels: labels(&r, version)}
		out = append(out, r)
	}
	return out
}

// volumeInput is one of spec.agent.volumes as it enters the agent's hash:
// a host directory by its resolved path, a named volume by its name.
type volumeInput struct {
	Target   string `json:"target"`
	Source   string `json:"source"`
	ReadOnly bool   `json:"ro,omitempty"`
}

// workspace is what spec.agent.volumes, user and files make of the agent:
// its mounts, its user and the inputs they add to its hash.
func workspace(b *bottle.Bottle, cfg *containerConfig) reconcile.Fragment {
	a := &b.Spec.Agent
	var f reconcile.Fragment
	if len(a.Volumes) > 0 {
		in := make([]volumeInput, 0, len(a.Volumes))
		for _, v := range a.Volumes {
			m := mount.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Named() {
				m.Type, m.Source = mount.TypeVolume, bottle.VolumeName(b.Metadata.Name, v.Source)
				cfg.Volumes = append(cfg.Volumes, volumeMount{Name: m.Source, Target: v.Target, ReadOnly: v.ReadOnly})
				in = append(in, volumeInput{Target: v.Target, Source: v.Source, ReadOnly: v.ReadOnly})
			} else {
				// A bind, not the engine's Binds: a missing host
				// directory is an error, not an empty directory made
				// for it.
				m.Type, m.Source = mount.TypeBind, v.HostPath
				in = append(in, volumeInput{Target: v.Target, Source: v.HostPath, ReadOnly: v.ReadOnly})
			}
			cfg.Mounts = append(cfg.Mounts, m)
		}
		f = append(f, reconcile.In("volumes", in))
	}
	if a.User != "" {
		uid, gid, err := spec.ParseUser(a.User)
		if err == nil {
			cfg.User, cfg.UID, cfg.GID = fmt.Sprintf("%d:%d", uid, gid), uid, gid
		} else {
			cfg.User = a.User // validation refuses it before this
		}
		cfg.Labels[LabelUser] = cfg.User
		f = append(f, reconcile.In("user", cfg.User))
	}
	if len(b.Files) > 0 {
		cfg.Files = slices.Clone(b.Files)
		// The digests stand for the files: never their content.
		f = append(f, reconcile.In("files", b.FileDigests()))
	}
	return f
}

// place is where a bottle's parts are on its networks, worked out once for
// every builder.
type place struct {
	internalID, egressID string // resource IDs
	internalGW, egressGW string // the gateways' addresses ("" without a subnet)
	agentIP              string
}

func placeOf(b *bottle.Bottle) place {
	n := &b.Network
	at := place{
		internalID: resourceID(b.Metadata.Name, KindNetwork, bottle.RoleInternal),
		egressID:   resourceID(b.Metadata.Name, KindNetwork, bottle.RoleEgress),
	}
	if p, err := bottle.ParsePrefix(n.Subnet); err == nil {
		at.internalGW = spec.GatewayIP(p).String()
		at.agentIP = agentAddr(p, n.BundleIP)
	}
	if p, err := bottle.ParsePrefix(n.EgressSubnet); err == nil {
		at.egressGW = spec.GatewayIP(p).String()
	}
	return at
}

// internalNetwork is the bottle's network with no route out.
//
// A docker agent's internal network gets no address on the host: an
// internal network only stops forwarding, and a bridge with the gateway's
// address would let the agent reach every service the host listens on.
// Without it, the gateway answers nothing. A smolvm agent reaches the
// bundle from the host (its sockets are the host's), so the host keeps its
// address there; smolvm's --allow-cidr confines it.
func internalNetwork(b *bottle.Bottle, at place, version string) reconcile.Resource {
	n := &b.Network
	nf := reconcile.Fragment{reconcile.In("internal", true), reconcile.In("subnet", n.Subnet)}
	var opts map[string]string
	if b.Spec.Backend == spec.BackendDocker {
		nf = append(nf, reconcile.In("hostAddress", false))
		opts = map[string]string{OptionInhibitIPv4: "true"}
	}
	r := newResource(b, KindNetwork, bottle.RoleInternal, nf)
	r.Summary = map[string]string{"subnet": n.Subnet, "internal": "true"}
	r.Config = networkConfig{Name: r.Name, Internal: true, Subnet: n.Subnet, Gateway: at.internalGW,
		Options: opts, Labels: labels(&r, version)}
	return r
}

// egressNetwork is the bundle's way out.
func egressNetwork(b *bottle.Bottle, at place, version string) reconcile.Resource {
	n := &b.Network
	r := newResource(b, KindNetwork, bottle.RoleEgress, reconcile.Fragment{reconcile.In("internal", false), reconcile.In("subnet", n.EgressSubnet)})
	r.Summary = map[string]string{"subnet": n.EgressSubnet}
	r.Config = networkConfig{Name: r.Name, Subnet: n.EgressSubnet, Gateway: at.egressGW, Labels: labels(&r, version)}
	return r
}

// bundleSettings are the bundle's settings as they enter hashes: sorted,
// and empty lists as absent ones.
type bundleSettings struct {
	daemons, allowCIDRs, egressAllow []string
}

func bundleSettingsOf(b *bottle.Bottle) bundleSettings {
	daemons := emptyNil(slices.Clone(b.Spec.Bundle.Daemons))
	sort.Strings(daemons)
	return bundleSettings{daemons: daemons, allowCIDRs: emptyNil(b.Network.AllowCIDRs), egressAllow: emptyNil(b.Spec.Bundle.Egress.Allow)}
}

// bundleContainer is the bundle, on both networks at its fixed address.
func bundleContainer(b *bottle.Bottle, at place, bundleImage, version string) reconcile.Resource {
	n := &b.Network
	set := bundleSettingsOf(b)
	image := b.Spec.Bundle.Image
	builtin := image == ""
	if builtin {
		image = bundleImage
	}
	f := reconcile.Fragment{
		reconcile.In("image", image), reconcile.In("daemons", set.daemons), reconcile.In("allowCIDRs", set.allowCIDRs), reconcile.In("ip", n.BundleIP),
		reconcile.In("egressAllow", set.egressAllow), reconcile.In("hardening", hardening),
	}
	// Inputs added after the first release enter the hash only when set,
	// so that existing bundles keep their hash. The DNS limits change the
	// bundle alone: the agent's proxy and resolver stay where they are.
	dnsLimits := b.Spec.Bundle.Egress.DNS
	if dnsLimits != (spec.EgressDNS{}) {
		f = append(f, reconcile.In("egressDNS", dnsLimits))
	}
	// What the bundle must never dial changes the bundle alone: the
	// agent's way out stays where it is.
	if len(b.Host.Denied) > 0 {
		f = append(f, reconcile.In("deniedRanges", b.Host.Denied))
	}
	if len(b.Host.Addrs) > 0 {
		f = append(f, reconcile.In("hostAddresses", b.Host.Addrs))
	}
	// Credentials change the bundle alone: a rotated value, a new CA or
	// new trusted certificates replace the bundle, not the agent (which
	// the CA's replacement replaces for its own reason).
	if len(b.Credentials) > 0 {
		f = append(f, reconcile.In("credentials", b.CredentialDigests()))
		if b.CA != nil {
			f = append(f, reconcile.In("credentialCA", b.CA.Fingerprint))
		}
		if b.TrustDigest != "" {
			f = append(f, reconcile.In("trust", b.TrustDigest))
		}
	}
	// Always there, unlike the inputs above: every bundle must get the
	// defaults, so every bundle made before them is replaced once.
	f = append(f, reconcile.In("defaults", defaults))
	r := newResource(b, KindContainer, bottle.RoleBundle, f)
	r.DependsOn = []string{at.internalID, at.egressID}
	r.BoundTo = []string{at.internalID, at.egressID}
	r.Summary = map[string]string{"image": image, "ip": n.BundleIP}
	if len(set.daemons) > 0 {
		r.Summary["daemons"] = strings.Join(set.daemons, ",")
	}
	if len(b.Credentials) > 0 {
		// What the bundle adds, and where: never the values.
		named := make([]string, len(b.Credentials))
		for i, c := range b.Credentials {
			named[i] = c.Host + ":" + strings.ToLower(c.Header)
		}
		r.Summary["credentials"] = strings.Join(named, ",")
	}
	cfg := containerConfig{
		Name: r.Name, Image: image, Builtin: builtin, Hostname: r.Name,
		Env: []string{
			"BOTTLE_ALLOW_CIDRS=" + strings.Join(n.AllowCIDRs, ","),
			"BOTTLE_DAEMONS=" + strings.Join(set.daemons, ","),
			fmt.Sprintf("BOTTLE_DNS_PORT=%d", bottle.DNSPort),
			"BOTTLE_EGRESS_ALLOW=" + strings.Join(set.egressAllow, ","),
			// The host's addresses on the bottle's networks: the proxy never
			// connects there, whatever a name resolves to.
			"BOTTLE_HOST_ADDRS=" + strings.Join(nonEmpty(at.internalGW, at.egressGW), ","),
			"BOTTLE_LISTEN_IP=" + n.BundleIP,
			"BOTTLE_NAME=" + b.Metadata.Name,
			fmt.Sprintf("BOTTLE_PROXY_PORT=%d", bottle.ProxyPort),
		},
		Networks: []endpoint{
			{Network: bottle.ResourceName(b.Metadata.Name, bottle.RoleInternal), IP: n.BundleIP},
			{Network: bottle.ResourceName(b.Metadata.Name, bottle.RoleEgress)},
		},
		Labels: labels(&r, version),
	}
	if len(b.Host.Denied)+len(b.Host.Addrs) > 0 {
		// The proxy never connects there, whatever allowCIDRs or a name
		// says, but for its own egress subnet (not its gateway).
		deny := slices.Clone(b.Host.Denied)
		for _, a := range b.Host.Addrs {
			if ip, err := netip.ParseAddr(a); err == nil {
				deny = append(deny, netip.PrefixFrom(ip, ip.BitLen()).String())
			}
		}
		cfg.Env = append(cfg.Env, "BOTTLE_DENY_CIDRS="+strings.Join(deny, ","), "BOTTLE_EGRESS_SUBNET="+n.EgressSubnet)
	}
	// Set only when the spec sets them: the bundle knows the defaults.
	cfg.Env = append(cfg.Env, bottle.DNSLimitsEnv(dnsLimits)...)
	if len(b.Credentials) > 0 {
		// The path alone: the file comes in before the bundle starts.
		cfg.Env = append(cfg.Env, "BOTTLE_CREDENTIALS_FILE="+bottle.BundleSecretsFile)
		// Desired checked that the CA is there: no error to expect.
		data, _ := b.BundleSecretsJSON()
		cfg.Secrets = []bottle.File{{Path: bottle.BundleSecretsFile, Content: data, Mode: 0o400}}
	}
	sort.Strings(cfg.Env)
	if builtin {
		// The built-in bundle needs nothing but to bind its front ports
		// (53 is below 1024) and to write to its stdout.
		cfg.CapDrop, cfg.CapAdd = []string{"ALL"}, []string{"NET_BIND_SERVICE"}
		cfg.ReadonlyRootfs, cfg.NoNewPrivileges = true, true
		// An agent that floods its proxy hurts only its own bottle.
		cfg.MemoryBytes, cfg.PidsLimit = bundleMemory, bundlePids
	}
	// The bundle is a proxy, never a router: with forwarding on (a new
	// network namespace inherits the host's ip_forward, which Docker
	// turns on), only the host's Docker isolation rules stop an agent
	// that routes through it. IPv6 forwarding is off by default; it is set
	// all the same. And no IPv6 at all, as in the agent: an engine whose
	// default network options turn IPv6 on (Docker 27 and later) would
	// give the egress network addresses that neither the bundle's list
	// nor the host guard's (IPv4) rule covers.
	cfg.Sysctls = map[string]string{"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0",
		"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
	// The decision log is the agent's to fill: bounded, whatever the
	// engine's default log driver.
	cfg.LogConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}}
	r.Config = cfg
	return r
}

// agentContainer is the agent, on the internal network only.
func agentContainer(b *bottle.Bottle, at place, version string) reconcile.Resource {
	n := &b.Network
	set := bundleSettingsOf(b)
	proxy := b.ProxyURL()
	a := &b.Spec.Agent
	f := reconcile.Fragment{
		reconcile.In("image", a.Image), reconcile.In("command", emptyNil(a.Command)), reconcile.In("workdir", a.Workdir), reconcile.In("env", emptyNilMap(a.Env)),
		reconcile.In("proxy", proxy), reconcile.In("ip", at.agentIP),
		// New bundle settings mean a new agent: its proxy may behave differently.
		reconcile.In("bundle", []any{b.Spec.Bundle.Image, set.daemons, set.allowCIDRs, set.egressAllow}),
		reconcile.In("hardening", hardening),
	}
	// Inputs added after the first release enter the hash only when set, so
	// that existing agents keep their hash.
	if a.CPUs != 0 {
		f = append(f, reconcile.In("cpus", a.CPUs))
	}
	if a.Memory != 0 {
		f = append(f, reconcile.In("memory", a.Memory))
	}
	if a.Pids != 0 {
		f = append(f, reconcile.In("pids", a.Pids))
	}
	// Secrets enter as their keyed digests, never their values.
	if len(b.Secrets) > 0 {
		f = append(f, reconcile.In("secretEnv", b.SecretDigests()))
	}
	// The agent trusts the bottle's CA, and holds the credentials'
	// placeholders: never their values, so that rotating one replaces
	// only the bundle.
	if b.CA != nil {
		f = append(f, reconcile.In("credentialCA", b.CA.Fingerprint))
		if env := b.CredentialEnv(); len(env) > 0 {
			f = append(f, reconcile.In("credentialEnv", env))
		}
	}
	ws := containerConfig{Labels: map[string]string{}}
	f = append(f, workspace(b, &ws)...)
	// Always there, like the bundle's: every agent must get the defaults.
	f = append(f, reconcile.In("defaults", defaults))
	r := newResource(b, KindContainer, bottle.RoleAgent, f)
	// The agent does not wait for the bundle: its proxy address is known
	// in advance. It waits for its volumes, which are never replaced, so
	// it is not bound to them.
	r.DependsOn = []string{at.internalID}
	for _, v := range a.Volumes {
		if id := resourceID(b.Metadata.Name, KindVolume, v.Source); v.Named() && !slices.Contains(r.DependsOn, id) {
			r.DependsOn = append(r.DependsOn, id)
		}
	}
	r.BoundTo = []string{at.internalID}
	r.Summary = map[string]string{"image": a.Image, "proxy": proxy, "ip": at.agentIP}
	if ws.User != "" {
		r.Summary["user"] = ws.User
	}
	cfg := containerConfig{
		Name: r.Name, Image: a.Image, Cmd: slices.Clone(a.Command), Env: b.AgentEnv(), Workdir: a.Workdir,
		Hostname: b.Metadata.Name, Init: true,
		Networks: []endpoint{{Network: bottle.ResourceName(b.Metadata.Name, bottle.RoleInternal), IP: at.agentIP}},
		// No CPU limit unless the spec sets one; memory and processes are
		// limited whatever it says (spec.Agent.MemoryLimit, PidsLimit).
		NanoCPUs: int64(a.CPUs) * 1e9, MemoryBytes: int64(a.MemoryLimit()) << 20, PidsLimit: int64(a.PidsLimit()),
		// Lookups go to the bundle (the engine's resolver in the agent
		// forwards what it does not know there, from the agent's network
		// namespace), never to the host's resolvers.
		DNS: []string{n.BundleIP},
		// No IPv6 at all: not even link-local addresses to reach the host's
		// bridge with.
		Sysctls: map[string]string{"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
		// Raw sockets could craft frames for addresses the agent has no
		// route to.
		CapDrop: []string{"NET_RAW"},
		Labels:  labels(&r, version),
		User:    ws.User, UID: ws.UID, GID: ws.GID, Mounts: ws.Mounts, Volumes: ws.Volumes, Files: ws.Files,
	}
	if b.CA != nil {
		cfg.CACert = b.CA.Cert
	}
	maps.Copy(cfg.Labels, ws.Labels)
	r.Config = cfg
	return r
}

// hardening names the version of the containers' isolation settings (the
// agent's DNS, sysctls and capabilities; the built-in bundle's). Raising it
// replaces the containers made under older settings.
const hardening = 2

// defaults names the version of what bottle-apply gives a bottle that its
// spec leaves out, beyond isolation (see hardening): raising it replaces
// every agent and bundle, and the plan says "defaults changed". Version 1:
// the agent's memory limit (spec.DefaultAgentMemory) and pids limit
// (spec.DefaultAgentPids), NODE_USE_ENV_PROXY=1 in its env (bottle.AgentEnv),
// and the bundle's IP forwarding off. The spec's own memory and pids enter
// as inputs of their own: setting them replaces the agent for them alone.
const defaults = 1

// The built-in bundle's limits.
const (
	bundleMemory = 512 << 20
	bundlePids   = 1024
)

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// agentAddr pins the agent to the subnet's last host address (the one
// before, if the bundle has it). With both containers pinned, the engine
// never hands the bundle's address to an agent created at the same time.
func agentAddr(p netip.Prefix, bundleIP string) string {
	last := lastHost(p)
	if last.String() == bundleIP {
		last = last.Prev()
	}
	return last.String()
}

func lastHost(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<(32-p.Bits()) - 1 // broadcast
	v--
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// emptyNil and emptyNilMap make "[]" and "{}" in a spec hash like an absent
// key: deleting `daemons: []` must not replace anything.
func emptyNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func emptyNilMap[K comparable, V any](m map[K]V) map[K]V {
	if len(m) == 0 {
		return nil
	}
	return m
}

// containerSpec translates a container config into the engine's types. It
// is pure. Only the primary network goes into the create call: engines
// before API 1.44 accept one network there, the rest are connected after.
func containerSpec(cfg containerConfig) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	config := &container.Config{
		Image: cfg.Image, Cmd: cfg.Cmd, Env: cfg.Env, WorkingDir: cfg.Workdir,
		Hostname: cfg.Hostname, Labels: cfg.Labels, User: cfg.User,
	}
	init := cfg.Init
	host := &container.HostConfig{Init: &init, DNS: cfg.DNS, Sysctls: cfg.Sysctls,
		CapAdd: cfg.CapAdd, CapDrop: cfg.CapDrop, ReadonlyRootfs: cfg.ReadonlyRootfs, Mounts: cfg.Mounts}
	if len(cfg.Secrets) > 0 {
		// A volume of the container's own, removed with it: the files are
		// copied into it before the start, where a read-only root file
		// system takes none.
		config.Volumes = map[string]struct{}{bottle.BundleSecretsDir: {}}
	}
	if cfg.NoNewPrivileges {
		host.SecurityOpt = []string{"no-new-privileges"}
	}
	if cfg.PidsLimit > 0 {
		host.PidsLimit = &cfg.PidsLimit
	}
	host.LogConfig = cfg.LogConfig
	host.NanoCPUs, host.Memory = cfg.NanoCPUs, cfg.MemoryBytes
	netcfg := &network.NetworkingConfig{}
	if len(cfg.Networks) > 0 {
		primary := cfg.Networks[0]
		host.NetworkMode = container.NetworkMode(primary.Network)
		netcfg.EndpointsConfig = map[string]*network.EndpointSettings{primary.Network: endpointSettings(primary)}
	}
	return config, host, netcfg
}

func endpointSettings(ep endpoint) *network.EndpointSettings {
	s := &network.EndpointSettings{}
	if ep.IP != "" {
		s.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ep.IP}
	}
	return s
}

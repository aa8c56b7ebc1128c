package smolvm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

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
	Env        []string // sorted K=V, the proxy variables included
	AllowCIDRs []string // the bundle's /32 first
	CPUs       int      // 0: smolvm's default
	MemoryMiB  int      // 0: smolvm's default
	Labels     map[string]string
	Record     record
}

// fragment is a named set of inputs whose normalized JSON is hashed. Each
// input is also digested alone so that the diff can name what changed.
// (The same scheme as the docker provider's.)
type fragment []input

type input struct {
	name  string
	value any
}

func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("internal: hash input: %v", err)) // only plain data is hashed
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (f fragment) hash() (string, map[string]string) {
	inputs := make(map[string]string, len(f))
	for _, in := range f {
		inputs[in.name] = digest(in.value)[:12]
	}
	return digest(inputs), inputs
}

func dockerID(kind, bottle, role string) string {
	r := reconcile.Resource{Provider: dockerProvider, Kind: kind, Bottle: bottle, Role: role}
	return r.ID()
}

// translate turns one resolved smolvm bottle (bundle IP filled in) into its
// agent machine. It is pure; route is the image route to show, if known.
func translate(b *spec.Bottle, version, route string) (reconcile.Resource, error) {
	name := b.Metadata.Name
	n := &b.Spec.Network
	bundleIP, err := netip.ParseAddr(n.BundleIP)
	if err != nil || !bundleIP.Is4() {
		return reconcile.Resource{}, fmt.Errorf("internal: bottle %s has no resolved bundle IP (%q)", name, n.BundleIP)
	}
	// The machine may reach the bundle (its proxy and DNS) and the extra
	// ranges, nothing else.
	cidrs := append([]string{netip.PrefixFrom(bundleIP, 32).String()}, n.AllowCIDRs...)
	a := &b.Spec.Agent
	f := fragment{
		{"image", a.Image}, {"command", a.Command}, {"workdir", a.Workdir}, {"env", a.Env},
		{"allowCIDRs", cidrs},
	}
	// Like the docker provider's agent: sizes enter the hash only when set.
	if a.CPUs != 0 {
		f = append(f, input{"cpus", a.CPUs})
	}
	if a.Memory != 0 {
		f = append(f, input{"memory", a.Memory})
	}
	h, inputs := f.hash()
	r := reconcile.Resource{
		Provider: ProviderName, Kind: kindMachine, Bottle: name, Role: roleAgent,
		Name: machineName(name, roleAgent), Hash: h, Inputs: inputs,
		DependsOn: []string{
			dockerID(dockerNetwork, name, dockerRoleNetwork),
			dockerID(dockerContainer, name, dockerRoleBundle),
		},
		Summary: map[string]string{"image": a.Image, "allow": strings.Join(cidrs, ",")},
	}
	if route != "" {
		r.Summary["route"] = route
	}

	// The proxy address derives from the bundle IP, which the allowCIDRs
	// input covers.
	proxy := fmt.Sprintf("http://%s:%d", bundleIP, proxyPort)
	env := make([]string, 0, len(a.Env)+6)
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, "HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy, "http_proxy="+proxy, "https_proxy="+proxy,
		"NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1")
	sort.Strings(env)
	rec := record{Name: r.Name, Bottle: name, Role: roleAgent, Hash: h, Inputs: inputs, Version: version}
	r.Config = machineConfig{
		Name: r.Name, Bottle: name, Image: a.Image, Cmd: slices.Clone(a.Command), Workdir: a.Workdir,
		Env: env, AllowCIDRs: cidrs, CPUs: a.CPUs, MemoryMiB: a.Memory,
		Labels: map[string]string{
			labelName: name, labelRole: roleAgent, labelHash: h,
			labelInputs: encodeInputs(inputs), labelVersion: version,
		},
		Record: rec,
	}
	return r, nil
}

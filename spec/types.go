// Package spec defines the bottle specification: its types, strict YAML
// decoding with file:line:column errors, validation and defaults.
//
// It imports no other package of this module.
package spec

import "strings"

// APIVersion and Kind are the only values accepted in a document's header.
const (
	APIVersion = "bottle-apply/v1"
	KindBottle = "Bottle"
)

// Backends a bottle's agent can run on.
const (
	BackendDocker     = "docker"
	BackendSmolvm     = "smolvm"
	BackendKubernetes = "kubernetes"
)

// Daemons the bundle knows how to run.
const (
	DaemonEgress = "egress"
	DaemonDNS    = "dns"
)

// Bottle is one document of a spec file.
type Bottle struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion" validate:"required,eq=bottle-apply/v1"`
	Kind       string   `yaml:"kind" json:"kind" validate:"required,eq=Bottle"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// Source says where the document came from; it is not part of the YAML.
	Source Source `yaml:"-" json:"-"`
}

// Source locates a document: the file (or "<stdin>" for standard input) and
// the 1-based line where the document starts.
type Source struct {
	File string
	Line int
}

// Metadata names the bottle. The name is a DNS label and names every
// resource of the bottle.
type Metadata struct {
	Name string `yaml:"name" json:"name" validate:"required,dnslabel"`
}

// Spec is the desired state of one bottle.
type Spec struct {
	Backend string  `yaml:"backend" json:"backend" validate:"omitempty,oneof=docker smolvm kubernetes"`
	Agent   Agent   `yaml:"agent" json:"agent"`
	Network Network `yaml:"network" json:"network"`
	Bundle  Bundle  `yaml:"bundle" json:"bundle"`
	// Kubernetes says where on a cluster a bottle of backend kubernetes
	// goes; the other backends refuse it (validate.go).
	Kubernetes Kubernetes `yaml:"kubernetes" json:"kubernetes,omitzero"`
}

// Kubernetes places a bottle on a cluster.
type Kubernetes struct {
	// Context is the kubeconfig context; empty is the current one
	// (KUBECONFIG honoured, as kubectl does).
	Context string `yaml:"context" json:"context,omitempty"`
	// Namespace is an existing namespace to put the bottle in, which
	// bottle-apply borrows and never deletes; empty gives the bottle a
	// namespace of its own, bottle-NAME, deleted with it.
	Namespace string `yaml:"namespace" json:"namespace,omitempty" validate:"omitempty,dnslabel"`
	// RuntimeClassName is passed to both pods (gVisor, Kata) for a
	// stronger boundary than the node's kernel.
	RuntimeClassName string `yaml:"runtimeClassName" json:"runtimeClassName,omitempty" validate:"omitempty,dnssubdomain"`
}

// MaxKubernetesName is the longest bottle name backend kubernetes takes:
// the agent's StatefulSet, bottle-NAME-agent, names its revisions with
// "-" and ten more characters in a label value, which holds 63.
const MaxKubernetesName = 39

// Agent is the guest the AI agent runs in.
type Agent struct {
	Image   string            `yaml:"image" json:"image" validate:"required,imageref"`
	Command []string          `yaml:"command" json:"command,omitempty"`
	Workdir string            `yaml:"workdir" json:"workdir,omitempty" validate:"omitempty,abspath"`
	Env     map[string]string `yaml:"env" json:"env,omitempty" validate:"dive,keys,envname,noproxy,endkeys"`
	// CPUs and Memory (MiB) size the agent: a microVM's resources on smolvm,
	// limits on docker. Zero CPUs means the backend's default (no limit on
	// docker); zero memory means DefaultAgentMemory.
	CPUs   int `yaml:"cpus" json:"cpus,omitempty" validate:"omitempty,min=1,max=64"`
	Memory int `yaml:"memory" json:"memory,omitempty" validate:"omitempty,min=64,max=1048576"`
	// Pids caps the processes (and threads) of a docker agent, so that a
	// fork bomb hurts only its bottle; zero means DefaultAgentPids. The
	// maximum is the kernel's own ceiling on PIDs (PID_MAX_LIMIT). smolvm
	// has no such knob, so a smolvm bottle may not set it (validate.go).
	Pids int `yaml:"pids" json:"pids,omitempty" validate:"omitempty,min=1,max=4194304"`
	// SecretEnv sets environment variables of the agent from secrets that
	// the spec names but does not hold: the environment of bottle-apply or
	// a file next to the spec. Checked in validate.go.
	SecretEnv map[string]SecretSource `yaml:"secretEnv" json:"secretEnv,omitempty" validate:"dive,keys,envname,noproxy,endkeys"`
	// User is the numeric uid[:gid] the agent's command, exec and the
	// files cp writes run as or belong to; empty is the image's own user.
	// Checked in workspace.go.
	User string `yaml:"user" json:"user,omitempty"`
	// Volumes are what the agent's work lives on: host directories and the
	// bottle's named volumes, which outlive the agent. Checked in
	// workspace.go.
	Volumes []Volume `yaml:"volumes" json:"volumes,omitempty" validate:"dive"`
	// Files are put in place in the agent every time it is created.
	// Checked in workspace.go.
	Files []File `yaml:"files" json:"files,omitempty" validate:"dive"`
}

// Volume is one mount of the agent. In YAML it is either this mapping or
// the short form "SOURCE:TARGET[:ro]". A Source that starts with "." or
// "/" is a host directory (relative to the spec file's directory); a bare
// DNS label is a named volume of the bottle.
type Volume struct {
	Source   string `yaml:"source" json:"source" validate:"required"`
	Target   string `yaml:"target" json:"target" validate:"required"`
	ReadOnly bool   `yaml:"readOnly" json:"readOnly,omitempty"`
	// AllowSensitive lets a host directory be or hold /etc, /usr or the
	// invoking user's home directory; bottle-apply warns when it is used
	// (SensitiveVolumes says what to warn of).
	AllowSensitive bool `yaml:"allowSensitive" json:"allowSensitive,omitempty"`
	// HostPath is a host directory's Source made absolute with its
	// symlinks resolved, set by Load once it has checked it; "" for a
	// named volume (and for a spec loaded without host checks).
	HostPath string `yaml:"-" json:"-"`
}

// Named reports whether the volume is a named volume of the bottle rather
// than a host directory.
func (v Volume) Named() bool {
	return !strings.HasPrefix(v.Source, ".") && !strings.HasPrefix(v.Source, "/")
}

// File is a file put in place in the agent every time it is created: its
// content comes from Source (a file relative to the spec file's directory,
// read like a secret file) or Content (inline), never both.
type File struct {
	Path   string `yaml:"path" json:"path" validate:"required"`
	Source string `yaml:"source" json:"source,omitempty"`
	// Content is never shown: not in JSON, not in errors.
	Content string `yaml:"content" json:"-"`
	// Mode is an octal string such as "0600"; empty is DefaultFileMode.
	Mode string `yaml:"mode" json:"mode,omitempty"`
	// Owner is a numeric uid[:gid]; empty is the agent's User (root
	// without one).
	Owner string `yaml:"owner" json:"owner,omitempty"`
}

// DefaultFileMode is the mode of a File that sets none.
const DefaultFileMode = 0o644

// SecretSource says where the value of a secret comes from.
type SecretSource struct {
	ValueFrom ValueFrom `yaml:"valueFrom" json:"valueFrom"`
}

// ValueFrom names the source of a secret: exactly one of Env (a variable of
// bottle-apply's own environment) and File (a path relative to the spec
// file's directory, which it may not leave).
type ValueFrom struct {
	Env  string `yaml:"env" json:"env,omitempty"`
	File string `yaml:"file" json:"file,omitempty"`
}

// Network is the bottle's private network.
type Network struct {
	// Subnet is an IPv4 CIDR; empty means chosen automatically.
	Subnet string `yaml:"subnet" json:"subnet,omitempty" validate:"omitempty,subnet4"`
	// BundleIP is the bundle's address on the subnet; empty means the
	// subnet's .2 (its second host address). Checked in validate.go: it
	// depends on Subnet.
	BundleIP string `yaml:"bundleIP" json:"bundleIP,omitempty"`
	// EgressSubnet is the IPv4 CIDR of the bundle's way out (a second,
	// routed network); empty means chosen automatically (a /28).
	EgressSubnet string `yaml:"egressSubnet" json:"egressSubnet,omitempty" validate:"omitempty,subnet4"`
	// AllowCIDRs are extra ranges the agent may reach directly.
	AllowCIDRs []string `yaml:"allowCIDRs" json:"allowCIDRs,omitempty" validate:"dive,prefix"`
}

// Bundle is the sidecar that runs the bottle's daemons.
type Bundle struct {
	// Image is empty for the built-in bundle image.
	Image   string   `yaml:"image" json:"image,omitempty" validate:"omitempty,imageref"`
	Daemons []string `yaml:"daemons" json:"daemons,omitempty" validate:"dive,oneof=egress dns"`
	// Egress configures the egress proxy (daemon "egress") and the DNS
	// daemon (daemon "dns"), which answers only for allowed names.
	Egress Egress `yaml:"egress" json:"egress,omitempty"`
}

// Egress is the egress proxy's policy.
type Egress struct {
	// Allow lists the hosts the agent may reach, with optional ports (see
	// EgressRule). Anything else is denied; so are IP literals outside
	// network.allowCIDRs.
	Allow []string `yaml:"allow" json:"allow,omitempty" validate:"dive,egressrule"`
	// DNS bounds the names looked up under wildcard rules, so that names
	// carry little data out.
	DNS EgressDNS `yaml:"dns" json:"dns,omitzero"`
	// Credentials are the secrets the bundle adds to the agent's requests
	// to their hosts, which the agent never holds: for those hosts, and
	// only those, the bundle terminates the agent's TLS with a certificate
	// of the bottle's own CA, sets the header and opens its own verified
	// TLS connection upstream. The agent is given the CA's certificate
	// (in /etc/bottle-apply and the variables common clients read), and at
	// most a placeholder in place of each value. Checked in credential.go.
	Credentials []Credential `yaml:"credentials" json:"credentials,omitempty" validate:"dive"`
	// Trust are PEM files of CA certificates (relative to the spec file's
	// directory, read like secret files) that the bundle trusts upstream,
	// besides the root store it carries, on the connections it opens for
	// Credentials: a corporate root, or a test's own CA.
	Trust []string `yaml:"trust" json:"trust,omitempty"`
}

// Credential is one entry of spec.bundle.egress.credentials: a header the
// bundle sets on every request to Host, replacing any the agent sent,
// whose value comes from ValueFrom and never reaches the agent.
type Credential struct {
	// Host is an exact name of spec.bundle.egress.allow (no wildcard): the
	// only host the header is sent to.
	Host string `yaml:"host" json:"host" validate:"required"`
	// Header is the header's name (x-api-key, Authorization); not one the
	// proxy owns (Host, Connection, Content-Length, Transfer-Encoding,
	// Upgrade, TE, Trailer, Keep-Alive, Proxy-*).
	Header string `yaml:"header" json:"header" validate:"required,httpheader"`
	// Prefix goes before the value ("Bearer "); it may hold no control
	// characters.
	Prefix string `yaml:"prefix" json:"prefix,omitempty" validate:"omitempty,headerprefix"`
	// ValueFrom is where the value comes from, as in secretEnv: exactly
	// one of env (a variable of bottle-apply's environment) and file (a
	// path relative to the spec file's directory).
	ValueFrom ValueFrom `yaml:"valueFrom" json:"valueFrom"`
	// AgentEnv is a variable of the agent set to a placeholder (never the
	// value), for clients that refuse to start without a key.
	AgentEnv string `yaml:"agentEnv" json:"agentEnv,omitempty" validate:"omitempty,envname,noproxy"`
}

// EgressDNS bounds the names under a wildcard rule (*.example.com) that
// the DNS daemon answers and the egress proxy resolves; names of exact
// rules are not bounded. Zero means the default (DefaultDNSMaxNameLength,
// DefaultDNSMaxLabelLength, DefaultDNSNewNamesPerMinute).
type EgressDNS struct {
	// MaxNameLength is the longest name, in characters without the
	// trailing dot.
	MaxNameLength int `yaml:"maxNameLength" json:"maxNameLength,omitempty" validate:"omitempty,min=1,max=253"`
	// MaxLabelLength is the longest label of a name.
	MaxLabelLength int `yaml:"maxLabelLength" json:"maxLabelLength,omitempty" validate:"omitempty,min=1,max=63"`
	// NewNamesPerMinute is how many distinct names a bottle may look up in
	// a minute; a name already looked up within the minute counts once.
	NewNamesPerMinute int `yaml:"newNamesPerMinute" json:"newNamesPerMinute,omitempty" validate:"omitempty,min=1,max=10000"`
}

// The bounds of EgressDNS when the spec sets none.
const (
	DefaultDNSMaxNameLength     = 100
	DefaultDNSMaxLabelLength    = 40
	DefaultDNSNewNamesPerMinute = 60
)

// The agent's limits when the spec sets none: an agent that runs away (a
// leak, a fork bomb) stops at them instead of taking the host down.
const (
	DefaultAgentMemory = 8192 // MiB
	DefaultAgentPids   = 4096
)

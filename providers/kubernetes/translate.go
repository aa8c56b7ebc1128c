package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	netac "k8s.io/client-go/applyconfigurations/networking/v1"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/place"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// ProviderName is the kubernetes provider's name in resource IDs.
const ProviderName = "kubernetes"

// Kinds of the objects a bottle has on a cluster.
const (
	KindNamespace     = "namespace"
	KindDeployment    = "deployment"
	KindStatefulSet   = "statefulset"
	KindService       = "service"
	KindNetworkPolicy = "networkpolicy"
	KindSecret        = "secret"
	KindPVC           = "persistentvolumeclaim"
)

// Roles of the objects that are neither the agent's nor the bundle's.
const (
	RoleNamespace = "namespace"
	RoleFiles     = "files"
	// RoleCredentials is the Secret the bundle alone reads its
	// credentials from (bottle.BundleSecretsFile): the values and the CA's
	// key. No pod of the agent mounts it.
	RoleCredentials = "credentials"
)

// credentialsKey is the credentials Secret's one key, the name of the
// file in bottle.BundleSecretsDir.
const credentialsKey = "credentials.json"

// credentialsVolume is the credentials Secret's volume in the bundle's
// pod.
const credentialsVolume = "bottle-credentials"

// Annotations of ours. The config hash and the inputs' digests are too
// long, or hold characters, that a label value may not; the labels hold
// the bottle and the role, which the lists select on.
const (
	annHash     = bottle.LabelHash
	annInputs   = bottle.LabelInputs
	annVersion  = bottle.LabelVersion
	annBundleIP = "io.bottle-apply.bundle-ip"
	annUser     = "io.bottle-apply.user"
)

// Container names in the pods: the role's.
const (
	containerAgent  = bottle.RoleAgent
	containerBundle = bottle.RoleBundle
	containerFiles  = "files"
	// containerConfined waits for the agent's NetworkPolicy.
	containerConfined = "confined"
)

// hardening names the version of the pods' isolation settings; raising it
// replaces the workloads made under older ones.
const hardening = 2

// Sizes of what the spec does not size.
const (
	// DefaultVolumeSize is the request of a named volume's claim.
	DefaultVolumeSize = "10Gi"
	bundleMemory      = "512Mi"
	// Grace periods: neither pod has anything to flush.
	agentGrace  = 5
	bundleGrace = 2
)

// ClusterInfo is what the bundle must never dial on a cluster, as the
// cluster tells it (or flags say when it does not), and its resolver.
type ClusterInfo struct {
	// PodCIDRs and ServiceCIDRs are the cluster's ranges.
	PodCIDRs, ServiceCIDRs []string
	// NodeAddrs are the nodes' addresses.
	NodeAddrs []string
	// DNS is the cluster DNS Service's ClusterIP, "" when there is none;
	// DNSPods selects its pods (namespace kube-system).
	DNS     string
	DNSPods map[string]string
	// APIServer are the API server's own addresses (host:port), which
	// the agent's pod knocks on, beside its node's kubelet, until its
	// NetworkPolicy holds.
	APIServer []string
}

// denied is every range the bundle never dials on this cluster: the
// cluster's own ranges, its nodes, link-local (metadata services) and
// loopback. Private ranges are refused by the bundle unless allowCIDRs
// says otherwise.
func (ci ClusterInfo) denied() []string {
	out := slices.Clone(ci.PodCIDRs)
	out = append(out, ci.ServiceCIDRs...)
	for _, a := range ci.NodeAddrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()).String())
		}
	}
	out = append(out, "169.254.0.0/16", "127.0.0.0/8")
	sort.Strings(out)
	return slices.Compact(out)
}

// privateRanges are the ranges the bundle's way out excludes unless
// allowCIDRs names them: the private, shared and benchmark ranges.
var privateRanges = []string{"10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15"}

// namespaceOf is the bottle's namespace: the one it borrows, or its own.
func namespaceOf(b *bottle.Bottle) string {
	if ns := b.Spec.Kubernetes.Namespace; ns != "" {
		return ns
	}
	return bottle.NamePrefix + b.Metadata.Name
}

// ownsNamespace reports whether the bottle has a namespace of its own,
// deleted with it.
func ownsNamespace(b *bottle.Bottle) bool { return b.Spec.Kubernetes.Namespace == "" }

// object is a resource's desired configuration: where it goes and what
// server-side apply sends. The agent's StatefulSet is rendered at apply
// time, when its bundle's ClusterIP is known.
type object struct {
	Kind, Namespace, Name string
	Apply                 any
	agent                 *agentTemplate
}

// labelsOf are the labels of every object of a bottle's role: what the
// lists select on, and what the pods are selected by.
func labelsOf(bottleName, role string) map[string]string {
	return map[string]string{bottle.LabelName: bottleName, bottle.LabelRole: role}
}

// objectLabels are the labels of a bottle's object itself: labelsOf, and
// the bottle's spec set when it has one. Selectors and pod templates keep
// labelsOf alone: a selector cannot change, and the set is in no hash.
func objectLabels(b *bottle.Bottle, role string) map[string]string {
	return bottle.WithSet(labelsOf(b.Metadata.Name, role), b.Set)
}

// metaOf are the ownership annotations of a resource.
func metaOf(r *reconcile.Resource, version string) map[string]string {
	return map[string]string{annHash: r.Hash, annInputs: reconcile.EncodeInputs(r.Inputs), annVersion: version}
}

func newResource(b *bottle.Bottle, kind, role, name string, f reconcile.Fragment) reconcile.Resource {
	h, in := f.Hash()
	return reconcile.Resource{Provider: ProviderName, Kind: kind, Bottle: b.Metadata.Name, Role: role, Name: name, Hash: h, Inputs: in, Set: b.Set}
}

func resourceID(bottleName, kind, role string) string {
	r := reconcile.Resource{Provider: ProviderName, Kind: kind, Bottle: bottleName, Role: role}
	return r.ID()
}

// translate turns one bottle into the objects it has on a cluster.
func translate(b *bottle.Bottle, ci ClusterInfo, version string) ([]reconcile.Resource, error) {
	ns := namespaceOf(b)
	var out []reconcile.Resource
	var base []string // what every namespaced object waits for
	if ownsNamespace(b) {
		r := newResource(b, KindNamespace, RoleNamespace, ns, reconcile.Fragment{reconcile.In("namespace", ns)})
		// A namespace that holds the bottle's volumes goes with them:
		// kept by a destroy without --volumes.
		r.Persistent = hasNamedVolumes(b)
		r.Summary = map[string]string{"namespace": ns}
		ann := metaOf(&r, version)
		if r.Persistent {
			ann[annPersistent] = "true"
		}
		r.Config = object{Kind: KindNamespace, Name: ns, Apply: coreac.Namespace(ns).
			WithLabels(objectLabels(b, RoleNamespace)).WithAnnotations(ann)}
		out = append(out, r)
		base = []string{r.ID()}
	}
	vols := volumes(b, ns, base, version)
	out = append(out, vols...)
	files, err := filesSecret(b, ns, base, version)
	if err != nil {
		return nil, err
	}
	creds, err := credentialsSecret(b, ns, base, version)
	if err != nil {
		return nil, err
	}
	allow, err := allowBlocks(b.Network.AllowCIDRs, ci.denied())
	if err != nil {
		return nil, fmt.Errorf("bottle %s: %w", b.Metadata.Name, err)
	}
	svc := bundleService(b, ns, base, version)
	bundleNP := bundlePolicy(b, ns, base, ci, allow, version)
	agentNP := agentPolicy(b, ns, base, allow, version)
	dep := bundleDeployment(b, ns, ci, version)
	dep.DependsOn = append(slices.Clone(base), bundleNP.ID())
	if creds != nil {
		// The bundle's pod starts with its credentials' Secret in place,
		// and a rotated value is in the Secret before the new pod reads it.
		out = append(out, *creds)
		dep.DependsOn = append(dep.DependsOn, creds.ID())
	}
	out = append(out, svc, bundleNP, agentNP, dep)
	agent := agentStatefulSet(b, ns, ci.APIServer, version)
	agent.DependsOn = append(slices.Clone(base), svc.ID(), agentNP.ID())
	agent.BoundTo = []string{svc.ID()}
	if files != nil {
		out = append(out, *files)
		agent.DependsOn = append(agent.DependsOn, files.ID())
	}
	for _, v := range vols {
		agent.DependsOn = append(agent.DependsOn, v.ID())
	}
	out = append(out, agent)
	return out, nil
}

func hasNamedVolumes(b *bottle.Bottle) bool {
	return slices.ContainsFunc(b.Spec.Agent.Volumes, func(v spec.Volume) bool { return v.Named() })
}

// volumes are the claims of the bottle's named volumes, one per distinct
// name: persistent, never replaced.
func volumes(b *bottle.Bottle, ns string, base []string, version string) []reconcile.Resource {
	var out []reconcile.Resource
	seen := map[string]bool{}
	for _, v := range b.Spec.Agent.Volumes {
		if !v.Named() || seen[v.Source] {
			continue
		}
		seen[v.Source] = true
		name := bottle.VolumeName(b.Metadata.Name, v.Source)
		r := newResource(b, KindPVC, v.Source, name, reconcile.Fragment{reconcile.In("volume", v.Source)})
		r.Persistent = true
		r.DependsOn = slices.Clone(base)
		r.Summary = map[string]string{"namespace": ns, "size": DefaultVolumeSize}
		pvc := coreac.PersistentVolumeClaim(name, ns).
			WithLabels(objectLabels(b, v.Source)).WithAnnotations(metaOf(&r, version)).
			WithSpec(coreac.PersistentVolumeClaimSpec().
				WithAccessModes(corev1.ReadWriteOnce).
				WithResources(coreac.VolumeResourceRequirements().
					WithRequests(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(DefaultVolumeSize)})))
		r.Config = object{Kind: KindPVC, Namespace: ns, Name: name, Apply: pvc}
		out = append(out, r)
	}
	return out
}

// agentFiles are the files the agent's init container puts in place:
// spec.agent.files, in the spec's order (their index is their key in the
// files Secret), then, for a bottle with credentials, the bottle's CA
// (bottle.CAFiles).
//
// The init container runs in the bundle's image, which cannot see the
// agent's image, so the CA bundle (bottle.AgentCABundle) joins the
// bottle's CA to the roots bottle-apply carries (ca.FallbackRootsPEM),
// not to the image's own CA bundle as the docker and smolvm providers do:
// a CA the agent's image adds to its own bundle is not in it.
func agentFiles(b *bottle.Bottle) []bottle.File {
	if b.CA == nil {
		return b.Files
	}
	return append(slices.Clone(b.Files), bottle.CAFiles(b.CA.Cert, ca.FallbackRootsPEM())...)
}

// rootsDigest stands for the roots bottle-apply carries in the files
// Secret's hash: public certificates, so a plain digest, made once (the
// roots are a few hundred kilobytes, and every plan translates).
var rootsDigest = sync.OnceValue(func() string {
	sum := sha256.Sum256(ca.FallbackRootsPEM())
	return hex.EncodeToString(sum[:])
})

// filesSecret holds the contents of agentFiles, one key a file (f0, f1,
// ...): the agent's init container puts them in place. A bottle with
// neither spec.agent.files nor credentials has none.
func filesSecret(b *bottle.Bottle, ns string, base []string, version string) (*reconcile.Resource, error) {
	if len(b.Spec.Agent.Files) == 0 && b.CA == nil {
		return nil, nil
	}
	if len(b.Files) != len(b.Spec.Agent.Files) {
		return nil, fmt.Errorf("internal: bottle %s: the files of spec.agent.files were not read", b.Metadata.Name)
	}
	digests := make([]string, len(b.Files))
	for i, f := range b.Files {
		digests[i] = f.Digest
		// Two files at one path would be two mounts at one path, which the
		// cluster refuses with the pod: say which file, before anything.
		if b.CA != nil && (cleanTarget(f.Path) == bottle.AgentCAFile || cleanTarget(f.Path) == bottle.AgentCABundle) {
			return nil, fmt.Errorf("bottle %s: spec.agent.files[%d]: %s is where the agent gets the bottle's CA (it has credentials): choose another path",
				b.Metadata.Name, i, f.Path)
		}
	}
	files := agentFiles(b)
	data := map[string][]byte{}
	for i, f := range files {
		data[place.Key(i)] = f.Content
	}
	f := reconcile.Fragment{reconcile.In("files", digests)}
	if b.CA != nil {
		// The CA's certificate and the roots it is joined to: a new
		// bottle-apply's roots update the Secret, which the agent reads
		// when its pod is made again; a new CA also replaces the agent.
		f = append(f, reconcile.In("credentialCA", b.CA.Fingerprint), reconcile.In("caRoots", rootsDigest()))
	}
	name := bottle.ResourceName(b.Metadata.Name, RoleFiles)
	r := newResource(b, KindSecret, RoleFiles, name, f)
	r.DependsOn = slices.Clone(base)
	r.Summary = map[string]string{"namespace": ns, "files": strconv.Itoa(len(files))}
	r.Config = object{Kind: KindSecret, Namespace: ns, Name: name, Apply: coreac.Secret(name, ns).
		WithLabels(objectLabels(b, RoleFiles)).WithAnnotations(metaOf(&r, version)).
		WithType(corev1.SecretTypeOpaque).WithData(data)}
	return &r, nil
}

// credentialDigests are the inputs that stand for the bundle's
// credentials in a hash: the credentials' keyed digests, the CA's
// fingerprint and the trusted certificates' digest, never a value. The
// credentials Secret and the bundle's Deployment both hold them, so that
// a rotated value replaces both and not the agent.
func credentialDigests(b *bottle.Bottle) reconcile.Fragment {
	if len(b.Credentials) == 0 {
		return nil
	}
	f := reconcile.Fragment{reconcile.In("credentials", b.CredentialDigests())}
	if b.CA != nil {
		f = append(f, reconcile.In("credentialCA", b.CA.Fingerprint))
	}
	if b.TrustDigest != "" {
		f = append(f, reconcile.In("trust", b.TrustDigest))
	}
	return f
}

// credentialsSecret holds what the bundle reads to add credentials to
// the agent's requests (bottle.BundleSecretsJSON: the values, the CA's
// key, the trusted certificates): mounted by the bundle's pod alone. A
// bottle without credentials has none.
func credentialsSecret(b *bottle.Bottle, ns string, base []string, version string) (*reconcile.Resource, error) {
	if len(b.Credentials) == 0 {
		return nil, nil
	}
	data, err := b.BundleSecretsJSON()
	if err != nil {
		return nil, err
	}
	name := bottle.ResourceName(b.Metadata.Name, RoleCredentials)
	r := newResource(b, KindSecret, RoleCredentials, name, credentialDigests(b))
	r.DependsOn = slices.Clone(base)
	r.Summary = map[string]string{"namespace": ns, "credentials": strconv.Itoa(len(b.Credentials))}
	r.Config = object{Kind: KindSecret, Namespace: ns, Name: name, Apply: coreac.Secret(name, ns).
		WithLabels(objectLabels(b, RoleCredentials)).WithAnnotations(metaOf(&r, version)).
		WithType(corev1.SecretTypeOpaque).WithData(map[string][]byte{credentialsKey: data})}
	return &r, nil
}

// bundlePorts are the ports the bundle serves the agent.
func bundlePorts() []*coreac.ServicePortApplyConfiguration {
	return []*coreac.ServicePortApplyConfiguration{
		coreac.ServicePort().WithName("proxy").WithProtocol(corev1.ProtocolTCP).WithPort(bottle.ProxyPort).WithTargetPort(intstr.FromInt32(bottle.ProxyPort)),
		coreac.ServicePort().WithName("dns").WithProtocol(corev1.ProtocolUDP).WithPort(bottle.DNSPort).WithTargetPort(intstr.FromInt32(bottle.DNSPort)),
		coreac.ServicePort().WithName("dns-tcp").WithProtocol(corev1.ProtocolTCP).WithPort(bottle.DNSPort).WithTargetPort(intstr.FromInt32(bottle.DNSPort)),
	}
}

// bundleService gives the bundle the bottle's fixed address: a ClusterIP
// the cluster allocates, which the agent's proxy and resolver point at.
func bundleService(b *bottle.Bottle, ns string, base []string, version string) reconcile.Resource {
	name := bottle.ResourceName(b.Metadata.Name, bottle.RoleBundle)
	r := newResource(b, KindService, bottle.RoleBundle, name, reconcile.Fragment{
		reconcile.In("ports", []int{bottle.ProxyPort, bottle.DNSPort}),
	})
	r.DependsOn = slices.Clone(base)
	r.Summary = map[string]string{"namespace": ns}
	r.Keeps = "nothing: the bundle's address changes, and the agent is replaced with it"
	r.Config = object{Kind: KindService, Namespace: ns, Name: name, Apply: coreac.Service(name, ns).
		WithLabels(objectLabels(b, bottle.RoleBundle)).WithAnnotations(metaOf(&r, version)).
		WithSpec(coreac.ServiceSpec().WithType(corev1.ServiceTypeClusterIP).
			WithSelector(labelsOf(b.Metadata.Name, bottle.RoleBundle)).WithPorts(bundlePorts()...))}
	return r
}

// policyPorts are the bundle's ports as a NetworkPolicy names them.
func policyPorts() []*netac.NetworkPolicyPortApplyConfiguration {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	return []*netac.NetworkPolicyPortApplyConfiguration{
		netac.NetworkPolicyPort().WithProtocol(tcp).WithPort(intstr.FromInt32(bottle.ProxyPort)),
		netac.NetworkPolicyPort().WithProtocol(udp).WithPort(intstr.FromInt32(bottle.DNSPort)),
		netac.NetworkPolicyPort().WithProtocol(tcp).WithPort(intstr.FromInt32(bottle.DNSPort)),
	}
}

// agentPolicy: the agent may send only to its bundle's proxy and DNS
// ports, and to allowCIDRs; nothing may reach it (exec goes through the
// API and the kubelet, not the pod network).
func agentPolicy(b *bottle.Bottle, ns string, base []string, allow []*netac.IPBlockApplyConfiguration, version string) reconcile.Resource {
	name := bottle.ResourceName(b.Metadata.Name, bottle.RoleAgent)
	egress := []*netac.NetworkPolicyEgressRuleApplyConfiguration{
		netac.NetworkPolicyEgressRule().WithPorts(policyPorts()...).
			WithTo(netac.NetworkPolicyPeer().WithPodSelector(metaac.LabelSelector().WithMatchLabels(labelsOf(b.Metadata.Name, bottle.RoleBundle)))),
	}
	for _, blk := range allow {
		egress = append(egress, netac.NetworkPolicyEgressRule().WithTo(netac.NetworkPolicyPeer().WithIPBlock(blk)))
	}
	np := netac.NetworkPolicySpec().
		WithPodSelector(metaac.LabelSelector().WithMatchLabels(labelsOf(b.Metadata.Name, bottle.RoleAgent))).
		WithPolicyTypes("Ingress", "Egress").WithEgress(egress...)
	r := newResource(b, KindNetworkPolicy, bottle.RoleAgent, name, reconcile.Fragment{
		reconcile.In("allowCIDRs", emptyNil(b.Network.AllowCIDRs)), reconcile.In("allowed", allow), reconcile.In("hardening", hardening),
	})
	r.DependsOn = slices.Clone(base)
	r.Summary = map[string]string{"namespace": ns}
	r.Config = object{Kind: KindNetworkPolicy, Namespace: ns, Name: name, Apply: netac.NetworkPolicy(name, ns).
		WithLabels(objectLabels(b, bottle.RoleAgent)).WithAnnotations(metaOf(&r, version)).WithSpec(np)}
	return r
}

// bundlePolicy: only the agent reaches the bundle, on its ports; the
// bundle's way out is anywhere but the cluster's ranges, its nodes,
// link-local and loopback, and private ranges that allowCIDRs does not
// name, plus the cluster's resolver on port 53.
func bundlePolicy(b *bottle.Bottle, ns string, base []string, ci ClusterInfo, allow []*netac.IPBlockApplyConfiguration, version string) reconcile.Resource {
	name := bottle.ResourceName(b.Metadata.Name, bottle.RoleBundle)
	except := append(ci.denied(), privateRanges...)
	except = slices.DeleteFunc(except, func(s string) bool {
		p, err := netip.ParsePrefix(s)
		return err != nil || !p.Addr().Is4() || p.Bits() == 0
	})
	sort.Strings(except)
	except = slices.Compact(except)
	egress := []*netac.NetworkPolicyEgressRuleApplyConfiguration{
		netac.NetworkPolicyEgressRule().WithTo(netac.NetworkPolicyPeer().WithIPBlock(netac.IPBlock().WithCIDR("0.0.0.0/0").WithExcept(except...))),
	}
	for _, blk := range allow {
		egress = append(egress, netac.NetworkPolicyEgressRule().WithTo(netac.NetworkPolicyPeer().WithIPBlock(blk)))
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	dnsPorts := []*netac.NetworkPolicyPortApplyConfiguration{
		netac.NetworkPolicyPort().WithProtocol(udp).WithPort(intstr.FromInt32(53)),
		netac.NetworkPolicyPort().WithProtocol(tcp).WithPort(intstr.FromInt32(53)),
	}
	if ci.DNS != "" {
		peers := []*netac.NetworkPolicyPeerApplyConfiguration{
			netac.NetworkPolicyPeer().WithIPBlock(netac.IPBlock().WithCIDR(ci.DNS + "/32")),
		}
		if len(ci.DNSPods) > 0 {
			peers = append(peers, netac.NetworkPolicyPeer().
				WithNamespaceSelector(metaac.LabelSelector().WithMatchLabels(map[string]string{"kubernetes.io/metadata.name": "kube-system"})).
				WithPodSelector(metaac.LabelSelector().WithMatchLabels(ci.DNSPods)))
		}
		egress = append(egress, netac.NetworkPolicyEgressRule().WithPorts(dnsPorts...).WithTo(peers...))
	}
	np := netac.NetworkPolicySpec().
		WithPodSelector(metaac.LabelSelector().WithMatchLabels(labelsOf(b.Metadata.Name, bottle.RoleBundle))).
		WithPolicyTypes("Ingress", "Egress").
		WithIngress(netac.NetworkPolicyIngressRule().WithPorts(policyPorts()...).
			WithFrom(netac.NetworkPolicyPeer().WithPodSelector(metaac.LabelSelector().WithMatchLabels(labelsOf(b.Metadata.Name, bottle.RoleAgent))))).
		WithEgress(egress...)
	r := newResource(b, KindNetworkPolicy, bottle.RoleBundle, name, reconcile.Fragment{
		reconcile.In("allowCIDRs", emptyNil(b.Network.AllowCIDRs)), reconcile.In("except", except),
		reconcile.In("dns", []any{ci.DNS, ci.DNSPods}), reconcile.In("hardening", hardening),
	})
	r.DependsOn = slices.Clone(base)
	r.Summary = map[string]string{"namespace": ns}
	r.Config = object{Kind: KindNetworkPolicy, Namespace: ns, Name: name, Apply: netac.NetworkPolicy(name, ns).
		WithLabels(objectLabels(b, bottle.RoleBundle)).WithAnnotations(metaOf(&r, version)).WithSpec(np)}
	return r
}

// allowBlocks are the ipBlocks of allowCIDRs less the ranges no bottle
// may reach on the cluster (its pod and service ranges, its nodes,
// link-local, loopback): NetworkPolicy rules add up, so an allowed range
// that holds them would open them to the agent. A range that lies inside
// one of them is refused.
func allowBlocks(allow, denied []string) ([]*netac.IPBlockApplyConfiguration, error) {
	var out []*netac.IPBlockApplyConfiguration
	for _, a := range allow {
		ap, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("network.allowCIDRs: %q: %w", a, err)
		}
		blk := netac.IPBlock().WithCIDR(ap.Masked().String())
		for _, d := range denied {
			dp, err := netip.ParsePrefix(d)
			if err != nil || dp.Addr().Is4() != ap.Addr().Is4() || !ap.Overlaps(dp) {
				continue
			}
			if dp.Bits() <= ap.Bits() {
				return nil, fmt.Errorf("network.allowCIDRs %s lies inside %s, which is the cluster's own (its pods, services or nodes, link-local or loopback) and which no bottle may reach; remove it", a, d)
			}
			blk.WithExcept(dp.Masked().String())
		}
		out = append(out, blk)
	}
	return out, nil
}

// restricted is the security context of a container that needs nothing:
// no privilege escalation, every capability dropped but add, seccomp's
// runtime default.
func restricted(add ...corev1.Capability) *coreac.SecurityContextApplyConfiguration {
	return coreac.SecurityContext().WithAllowPrivilegeEscalation(false).WithPrivileged(false).
		WithCapabilities(coreac.Capabilities().WithDrop("ALL").WithAdd(add...)).
		WithSeccompProfile(coreac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
}

// podBase is what both pods share: no service-account token, no service
// links (the cluster's services as environment variables), the runtime
// class.
func podBase(b *bottle.Bottle, grace int64) *coreac.PodSpecApplyConfiguration {
	ps := coreac.PodSpec().WithAutomountServiceAccountToken(false).WithEnableServiceLinks(false).
		WithTerminationGracePeriodSeconds(grace).
		WithSecurityContext(coreac.PodSecurityContext().WithSeccompProfile(coreac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)).
			// No IPv6 at all: the pod network's link-local addresses reach
			// the node and the other pods, and an IPv4 NetworkPolicy does
			// not confine them. The kubelet must allow these sysctls
			// (allowedUnsafeSysctls); a pod it refuses fails the apply
			// saying so.
			WithSysctls(
				coreac.Sysctl().WithName("net.ipv6.conf.all.disable_ipv6").WithValue("1"),
				coreac.Sysctl().WithName("net.ipv6.conf.default.disable_ipv6").WithValue("1")))
	if rc := b.Spec.Kubernetes.RuntimeClassName; rc != "" {
		ps.WithRuntimeClassName(rc)
	}
	return ps
}

// bundleDeployment is the bundle: one pod, replaced whole (Recreate), its
// daemons listening on its pod address.
func bundleDeployment(b *bottle.Bottle, ns string, ci ClusterInfo, version string) reconcile.Resource {
	name := bottle.ResourceName(b.Metadata.Name, bottle.RoleBundle)
	daemons := emptyNil(slices.Clone(b.Spec.Bundle.Daemons))
	sort.Strings(daemons)
	denied := ci.denied()
	dnsLimits := b.Spec.Bundle.Egress.DNS
	f := reconcile.Fragment{
		reconcile.In("image", b.Spec.Bundle.Image), reconcile.In("daemons", daemons), reconcile.In("allowCIDRs", emptyNil(b.Network.AllowCIDRs)),
		reconcile.In("egressAllow", emptyNil(b.Spec.Bundle.Egress.Allow)), reconcile.In("deniedRanges", denied),
		reconcile.In("egressDNS", dnsLimits), reconcile.In("runtimeClass", b.Spec.Kubernetes.RuntimeClassName),
		reconcile.In("resolver", ci.DNS), reconcile.In("hardening", hardening),
	}
	// Credentials change the bundle alone: a rotated value, a new CA or
	// new trusted certificates replace the bundle, not the agent (which a
	// new CA replaces for its own reason).
	f = append(f, credentialDigests(b)...)
	r := newResource(b, KindDeployment, bottle.RoleBundle, name, f)
	r.Summary = map[string]string{"namespace": ns, "image": b.Spec.Bundle.Image}
	if len(daemons) > 0 {
		r.Summary["daemons"] = strings.Join(daemons, ",")
	}
	r.Keeps = "the bundle's address (its Service)"
	r.Discards = "the bundle's decision log of the old pod"
	env := []*coreac.EnvVarApplyConfiguration{
		envVar("BOTTLE_ALLOW_CIDRS", strings.Join(b.Network.AllowCIDRs, ",")),
		envVar("BOTTLE_DAEMONS", strings.Join(daemons, ",")),
		envVar("BOTTLE_DENY_CIDRS", strings.Join(denied, ",")),
		envVar("BOTTLE_DNS_PORT", strconv.Itoa(bottle.DNSPort)),
		envVar("BOTTLE_EGRESS_ALLOW", strings.Join(b.Spec.Bundle.Egress.Allow, ",")),
		coreac.EnvVar().WithName("BOTTLE_LISTEN_IP").WithValueFrom(coreac.EnvVarSource().WithFieldRef(coreac.ObjectFieldSelector().WithFieldPath("status.podIP"))),
		envVar("BOTTLE_NAME", b.Metadata.Name),
		envVar("BOTTLE_PROXY_PORT", strconv.Itoa(bottle.ProxyPort)),
	}
	if ci.DNS != "" {
		env = append(env, envVar("BOTTLE_DNS_UPSTREAM", netip.AddrPortFrom(netip.MustParseAddr(ci.DNS), 53).String()))
	}
	for _, kv := range bottle.DNSLimitsEnv(dnsLimits) {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, envVar(k, v))
	}
	if len(b.Credentials) > 0 {
		// The path alone: the file is the credentials Secret, mounted.
		env = append(env, envVar("BOTTLE_CREDENTIALS_FILE", bottle.BundleSecretsFile))
	}
	c := coreac.Container().WithName(containerBundle).WithImage(b.Spec.Bundle.Image).WithImagePullPolicy(corev1.PullIfNotPresent).
		WithEnv(env...).
		// It binds port 53 and writes to its stdout; nothing more.
		WithSecurityContext(restricted("NET_BIND_SERVICE").WithReadOnlyRootFilesystem(true)).
		WithResources(coreac.ResourceRequirements().WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(bundleMemory)}))
	for _, p := range bundlePorts() {
		c.WithPorts(coreac.ContainerPort().WithName(*p.Name).WithProtocol(*p.Protocol).WithContainerPort(*p.Port))
	}
	if len(daemons) > 0 {
		port := int32(bottle.ProxyPort)
		if !slices.Contains(daemons, spec.DaemonEgress) {
			port = bottle.DNSPort
		}
		c.WithReadinessProbe(coreac.Probe().WithTCPSocket(coreac.TCPSocketAction().WithPort(intstr.FromInt32(port))).
			WithPeriodSeconds(1).WithFailureThreshold(3))
	}
	ps := podBase(b, bundleGrace)
	if len(b.Credentials) > 0 {
		// The kubelet writes a Secret volume's files as root's (no
		// fsGroup is set, so no group gets them), mode 0400. The bundle
		// reads them as root, which owns them, with every capability
		// dropped but NET_BIND_SERVICE (so not CAP_DAC_OVERRIDE): set here,
		// not left to the image's USER, which could be another user who
		// cannot read them. The agent's pod never mounts the Secret.
		c.SecurityContext.WithRunAsUser(0).WithRunAsGroup(0)
		c.WithVolumeMounts(coreac.VolumeMount().WithName(credentialsVolume).WithMountPath(bottle.BundleSecretsDir).WithReadOnly(true))
		ps.WithVolumes(coreac.Volume().WithName(credentialsVolume).WithSecret(coreac.SecretVolumeSource().
			WithSecretName(bottle.ResourceName(b.Metadata.Name, RoleCredentials)).WithDefaultMode(0o400).
			WithItems(coreac.KeyToPath().WithKey(credentialsKey).WithPath(credentialsKey).WithMode(0o400))))
	}
	ps.WithContainers(c)
	// The bundle resolves through the cluster's DNS when there is one,
	// else through the node's resolver.
	if ci.DNS != "" {
		ps.WithDNSPolicy(corev1.DNSClusterFirst)
	} else {
		ps.WithDNSPolicy(corev1.DNSDefault)
	}
	dep := appsac.Deployment(name, ns).
		WithLabels(objectLabels(b, bottle.RoleBundle)).WithAnnotations(metaOf(&r, version)).
		WithSpec(appsac.DeploymentSpec().WithReplicas(1).
			WithStrategy(appsac.DeploymentStrategy().WithType("Recreate")).
			WithSelector(metaac.LabelSelector().WithMatchLabels(labelsOf(b.Metadata.Name, bottle.RoleBundle))).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(labelsOf(b.Metadata.Name, bottle.RoleBundle)).
				// A replace makes a new pod even when nothing of the pod's
				// own changes: a rotated credential changes only the Secret
				// it mounts, which the bundle reads once, at its start.
				WithAnnotations(map[string]string{annHash: r.Hash}).WithSpec(ps)))
	r.Config = object{Kind: KindDeployment, Namespace: ns, Name: name, Apply: dep}
	return r
}

func envVar(k, v string) *coreac.EnvVarApplyConfiguration {
	return coreac.EnvVar().WithName(k).WithValue(v)
}

// agentTemplate is the agent's StatefulSet but for its bundle's address,
// which the cluster allocates with the Service.
type agentTemplate struct {
	// apiServer are the API server's addresses the pod knocks on.
	apiServer []string
	b         *bottle.Bottle
	ns        string
	name      string
	version   string
	meta      map[string]string
}

// agentStatefulSet is the agent: one pod with a stable identity, on the
// bottle's volumes.
func agentStatefulSet(b *bottle.Bottle, ns string, apiServer []string, version string) reconcile.Resource {
	a := &b.Spec.Agent
	name := bottle.ResourceName(b.Metadata.Name, bottle.RoleAgent)
	daemons := emptyNil(slices.Clone(b.Spec.Bundle.Daemons))
	sort.Strings(daemons)
	f := reconcile.Fragment{
		reconcile.In("image", a.Image), reconcile.In("command", emptyNil(a.Command)), reconcile.In("workdir", a.Workdir), reconcile.In("env", a.Env),
		reconcile.In("cpus", a.CPUs), reconcile.In("memory", a.MemoryLimit()),
		reconcile.In("bundle", []any{b.Spec.Bundle.Image, daemons, emptyNil(b.Network.AllowCIDRs), emptyNil(b.Spec.Bundle.Egress.Allow)}),
		reconcile.In("runtimeClass", b.Spec.Kubernetes.RuntimeClassName), reconcile.In("hardening", hardening),
		reconcile.In("knocks", apiServer),
	}
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
	if a.User != "" {
		f = append(f, reconcile.In("user", a.User))
	}
	if len(a.Volumes) > 0 {
		f = append(f, reconcile.In("volumes", a.Volumes))
	}
	if len(b.Files) > 0 {
		digests := make([]string, len(b.Files))
		for i, fl := range b.Files {
			digests[i] = fl.Digest
		}
		f = append(f, reconcile.In("files", digests))
	}
	r := newResource(b, KindStatefulSet, bottle.RoleAgent, name, f)
	r.Summary = map[string]string{"namespace": ns, "image": a.Image}
	if a.User != "" {
		r.Summary["user"] = a.User
	}
	var keeps []string
	for _, v := range a.Volumes {
		keeps = append(keeps, v.Target)
	}
	if len(keeps) > 0 {
		r.Keeps = "what is under " + strings.Join(keeps, ", ") + " (the bottle's volumes)"
		r.Discards = "everything else in the agent's filesystem, and its processes"
	} else {
		r.Discards = "the agent's filesystem and its processes (the bottle has no volumes)"
	}
	meta := metaOf(&r, version)
	if a.User != "" {
		meta[annUser] = a.User
	}
	r.Config = object{Kind: KindStatefulSet, Namespace: ns, Name: name, agent: &agentTemplate{apiServer: apiServer, b: b, ns: ns, name: name, version: version, meta: meta}}
	return r
}

// render is the agent's StatefulSet once its bundle's address is known.
func (t *agentTemplate) render(bundleIP string) (*appsac.StatefulSetApplyConfiguration, error) {
	b, a := t.b, &t.b.Spec.Agent
	ip, err := netip.ParseAddr(bundleIP)
	if err != nil {
		return nil, fmt.Errorf("the bundle Service of bottle %s has no ClusterIP (%q)", b.Metadata.Name, bundleIP)
	}
	rb := *b
	rb.Network.BundleIP = ip.String()
	var env []*coreac.EnvVarApplyConfiguration
	for _, kv := range rb.AgentEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, envVar(k, v))
	}
	c := coreac.Container().WithName(containerAgent).WithImage(a.Image).WithImagePullPolicy(corev1.PullIfNotPresent).
		WithEnv(env...).WithSecurityContext(restricted())
	// The spec's command is docker's: the image's entrypoint runs it.
	if len(a.Command) > 0 {
		c.WithArgs(a.Command...)
	}
	if a.Workdir != "" {
		c.WithWorkingDir(a.Workdir)
	}
	limits := corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(int64(a.MemoryLimit())<<20, resource.BinarySI)}
	if a.CPUs > 0 {
		limits[corev1.ResourceCPU] = *resource.NewQuantity(int64(a.CPUs), resource.DecimalSI)
	}
	c.WithResources(coreac.ResourceRequirements().WithLimits(limits))
	ps := podBase(b, agentGrace).WithHostname(b.Metadata.Name).
		// Lookups go to the bundle, never to the cluster's DNS.
		WithDNSPolicy(corev1.DNSNone).WithDNSConfig(coreac.PodDNSConfig().WithNameservers(ip.String()))
	if a.User != "" {
		uid, gid, err := spec.ParseUser(a.User)
		if err != nil {
			return nil, err
		}
		ps.SecurityContext.WithRunAsUser(int64(uid)).WithRunAsGroup(int64(gid))
	}
	for _, v := range a.Volumes {
		vol := volumeName(v.Source)
		c.WithVolumeMounts(coreac.VolumeMount().WithName(vol).WithMountPath(v.Target).WithReadOnly(v.ReadOnly))
	}
	seen := map[string]bool{}
	for _, v := range a.Volumes {
		if seen[v.Source] {
			continue
		}
		seen[v.Source] = true
		ps.WithVolumes(coreac.Volume().WithName(volumeName(v.Source)).WithPersistentVolumeClaim(
			coreac.PersistentVolumeClaimVolumeSource().WithClaimName(bottle.VolumeName(b.Metadata.Name, v.Source))))
	}
	// The agent's command starts once its NetworkPolicy holds, which the
	// network plugin programs some time after the pod starts: the node's
	// kubelet answers every pod until then.
	ps.WithInitContainers(coreac.Container().WithName(containerConfined).WithImage(b.Spec.Bundle.Image).WithImagePullPolicy(corev1.PullIfNotPresent).
		WithCommand(append([]string{bundleimage.BinaryPath, "confined", "$(BOTTLE_NODE_IP):10250"}, t.apiServer...)...).
		WithEnv(coreac.EnvVar().WithName("BOTTLE_NODE_IP").WithValueFrom(coreac.EnvVarSource().WithFieldRef(coreac.ObjectFieldSelector().WithFieldPath("status.hostIP")))).
		WithTerminationMessagePolicy(corev1.TerminationMessageFallbackToLogsOnError).
		WithSecurityContext(restricted().WithReadOnlyRootFilesystem(true)).
		WithResources(coreac.ResourceRequirements().WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")})))
	if err := placeFiles(b, ps, c); err != nil {
		return nil, err
	}
	ps.WithContainers(c)
	meta := map[string]string{annBundleIP: ip.String()}
	for k, v := range t.meta {
		meta[k] = v
	}
	return appsac.StatefulSet(t.name, t.ns).
		WithLabels(objectLabels(b, bottle.RoleAgent)).WithAnnotations(meta).
		WithSpec(appsac.StatefulSetSpec().WithReplicas(1).WithServiceName(bottle.ResourceName(b.Metadata.Name, bottle.RoleBundle)).
			WithPodManagementPolicy("Parallel").
			WithSelector(metaac.LabelSelector().WithMatchLabels(labelsOf(b.Metadata.Name, bottle.RoleAgent))).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(labelsOf(b.Metadata.Name, bottle.RoleAgent)).
				WithAnnotations(map[string]string{annBundleIP: ip.String()}).WithSpec(ps))), nil
}

// volumeName is a named volume's name in the pod spec.
func volumeName(source string) string { return "vol-" + source }

// filesVolume, filesOut: the Secret of the files, and the emptyDir the
// init container writes files outside every volume into.
const (
	filesVolume = "bottle-files"
	filesOut    = "bottle-files-out"
)

// mountOf returns the volume of the agent that path lies in (the deepest
// mount point), or false.
func mountOf(vols []spec.Volume, p string) (spec.Volume, bool) {
	var best spec.Volume
	found := false
	for _, v := range vols {
		if p == v.Target || strings.HasPrefix(p, strings.TrimSuffix(v.Target, "/")+"/") {
			if !found || len(v.Target) > len(best.Target) {
				best, found = v, true
			}
		}
	}
	return best, found
}

// cleanTarget is a target path as the init container sees it.
func cleanTarget(p string) string { return path.Clean("/" + p) }

// placeFiles adds the init container that puts spec.agent.files in place,
// owned and moded as the spec says, which a Secret volume cannot: a file
// inside a named volume is written into it; one outside every volume into
// an emptyDir, which the agent mounts at the file's path (one file, lost
// with the pod, as docker's are lost with the container). It also gives
// the root of each writable named volume to spec.agent.user.
func placeFiles(b *bottle.Bottle, ps *coreac.PodSpecApplyConfiguration, agent *coreac.ContainerApplyConfiguration) error {
	a := &b.Spec.Agent
	// Files go into the writable named volumes they lie in; a read-only
	// one is no place for them (spec refuses it).
	var writable []string
	for _, v := range a.Volumes {
		if v.Named() && !v.ReadOnly && !slices.Contains(writable, cleanTarget(v.Target)) {
			writable = append(writable, cleanTarget(v.Target))
		}
	}
	files := agentFiles(b)
	m, err := place.New(files, writable)
	if err != nil {
		return fmt.Errorf("bottle %s: %w", b.Metadata.Name, err)
	}
	if a.User != "" {
		uid, gid, err := spec.ParseUser(a.User)
		if err != nil {
			return err
		}
		for _, v := range writable {
			m.Chown = append(m.Chown, place.Chown{Path: v, UID: uid, GID: gid})
		}
	}
	if len(m.Files) == 0 && len(m.Chown) == 0 {
		return nil
	}
	init := coreac.Container().WithName(containerFiles).WithImage(b.Spec.Bundle.Image).WithImagePullPolicy(corev1.PullIfNotPresent).
		WithCommand(bundleimage.BinaryPath, "place").
		WithSecurityContext(restricted("CHOWN", "FOWNER", "DAC_OVERRIDE").WithRunAsUser(0).WithRunAsGroup(0).WithRunAsNonRoot(false).WithReadOnlyRootFilesystem(true)).
		WithResources(coreac.ResourceRequirements().WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}))
	for _, v := range a.Volumes {
		if t := cleanTarget(v.Target); v.Named() && !v.ReadOnly && slices.Contains(writable, t) {
			writable = slices.DeleteFunc(writable, func(s string) bool { return s == t })
			init.WithVolumeMounts(coreac.VolumeMount().WithName(volumeName(v.Source)).WithMountPath(t))
		}
	}
	if len(files) > 0 {
		ps.WithVolumes(
			coreac.Volume().WithName(filesVolume).WithSecret(coreac.SecretVolumeSource().
				WithSecretName(bottle.ResourceName(b.Metadata.Name, RoleFiles)).WithDefaultMode(0o400)),
			coreac.Volume().WithName(filesOut).WithEmptyDir(coreac.EmptyDirVolumeSource().WithSizeLimit(resource.MustParse("16Mi"))))
		init.WithVolumeMounts(
			coreac.VolumeMount().WithName(filesVolume).WithMountPath(place.SrcDir).WithReadOnly(true),
			coreac.VolumeMount().WithName(filesOut).WithMountPath(place.OutDir))
	}
	for i, f := range m.Files {
		if f.Volume == "" {
			agent.WithVolumeMounts(coreac.VolumeMount().WithName(filesOut).WithMountPath(files[i].Path).WithSubPath(place.Key(i)))
		}
	}
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	init.WithEnv(envVar(place.Env, string(js)))
	ps.WithInitContainers(init)
	return nil
}

func emptyNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Options configure the provider.
type Options struct {
	// Kubeconfig is the kubeconfig file; "" reads it as kubectl does.
	Kubeconfig string
	// Version is bottle-apply's, recorded on every object.
	Version string
	// PodCIDRs and ServiceCIDRs stand in for what a cluster does not tell
	// (nodes without podCIDRs, no ServiceCIDR API).
	PodCIDRs, ServiceCIDRs []string
}

// Provider puts bottles of backend kubernetes on a cluster. One run uses
// one kubeconfig context: that of its bottles.
type Provider struct {
	opts Options

	mu      sync.Mutex
	context string // the bottles' kubeconfig context
	used    bool   // a bottle of this run is on kubernetes
	cluster *Cluster
	info    ClusterInfo
	// bundleIPs are the bundles' ClusterIPs, by bottle, as observed or
	// as applied in this run.
	bundleIPs map[string]string
	// namespaces are the run's bottles' namespaces: an object wearing a
	// bottle's labels elsewhere, or under another name, is not its own.
	namespaces map[string]string
}

// New returns a provider that makes no call until a bottle needs it.
func New(opts Options) *Provider {
	return &Provider{opts: opts, bundleIPs: map[string]string{}}
}

// Name implements reconcile.Provider.
func (p *Provider) Name() string { return ProviderName }

// Use says which bottles of a run are on kubernetes: their context is the
// one the provider connects to. Bottles on two contexts in one run are an
// error: apply them in two runs.
func (p *Provider) Use(bottles []bottle.Bottle) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ctxs []string
	p.namespaces = map[string]string{}
	for _, b := range bottles {
		if b.Spec.Backend == spec.BackendKubernetes && !slices.Contains(ctxs, b.Spec.Kubernetes.Context) {
			ctxs = append(ctxs, b.Spec.Kubernetes.Context)
		}
		if b.Spec.Backend == spec.BackendKubernetes {
			p.namespaces[b.Metadata.Name] = namespaceOf(&b)
		}
	}
	switch len(ctxs) {
	case 0:
		return nil
	case 1:
		p.context, p.used = ctxs[0], true
		return nil
	}
	return fmt.Errorf("the bottles name %d kubeconfig contexts (%s); one run applies to one cluster: apply them in separate runs", len(ctxs), strings.Join(ctxs, ", "))
}

// Used reports whether a bottle of the run is on kubernetes.
func (p *Provider) Used() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// Cluster connects to the run's cluster (once).
func (p *Provider) Cluster() (*Cluster, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cluster != nil {
		return p.cluster, nil
	}
	c, err := Connect(p.opts.Kubeconfig, p.context)
	if err != nil {
		return nil, err
	}
	p.cluster = c
	return c, nil
}

// ConnectTo points the provider at a context without a spec (exec, cp and
// logs by bottle name).
func (p *Provider) ConnectTo(context string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.context, p.used, p.cluster = context, true, nil
}

// kinds are the kinds observe lists, one label-selected list each.
var kinds = []string{KindNamespace, KindPVC, KindSecret, KindService, KindNetworkPolicy, KindDeployment, KindStatefulSet}

// Observe implements reconcile.Provider: one list per kind, selected by
// the bottles' label, whatever the number of bottles, plus the pods (for
// the workloads' state) and what the cluster tells of its ranges. Under
// scope.All the selector is the label's existence instead: the same calls.
// Only a provider in use observes: with All, the caller decides whether
// to use the cluster (ConnectTo).
func (p *Provider) Observe(ctx context.Context, scope reconcile.Scope) ([]reconcile.Resource, error) {
	if !p.Used() || len(scope.Bottles) == 0 && !scope.All {
		return nil, nil
	}
	c, err := p.Cluster()
	if err != nil {
		return nil, err
	}
	selector, err := bottleSelector(scope)
	if err != nil {
		return nil, err
	}
	sel := metav1.ListOptions{LabelSelector: selector}
	var (
		mu   sync.Mutex
		out  []reconcile.Resource
		pods []corev1.Pod
		info ClusterInfo
	)
	add := func(rs ...reconcile.Resource) {
		mu.Lock()
		out = append(out, rs...)
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, k := range kinds {
		g.Go(func() error {
			rs, err := c.list(gctx, k, sel)
			if err != nil {
				return fmt.Errorf("list the bottles' %ss on %s: %w", k, c.Config.Host, explain(err))
			}
			add(rs...)
			return nil
		})
	}
	g.Go(func() error {
		l, err := c.Client.CoreV1().Pods("").List(gctx, sel)
		if err != nil {
			return fmt.Errorf("list the bottles' pods on %s: %w", c.Config.Host, explain(err))
		}
		pods = l.Items
		return nil
	})
	g.Go(func() error {
		var err error
		info, err = c.clusterInfo(gctx, p.opts)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out = p.ownObjects(ctx, out)
	p.mu.Lock()
	p.info = info
	for _, r := range out {
		if r.Kind == KindService && r.Role == bottle.RoleBundle && r.Managed {
			p.bundleIPs[r.Bottle] = r.Summary["ip"]
		}
	}
	p.mu.Unlock()
	judge(out, pods)
	observedDeps(out)
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

// bottleSelector is the label selector of a scope's objects: those of its
// bottles, or under All every object that carries a bottle's name. It is
// pure.
func bottleSelector(scope reconcile.Scope) (string, error) {
	op, values := selection.In, scope.Bottles
	if scope.All {
		op, values = selection.Exists, nil
	}
	req, err := labels.NewRequirement(bottle.LabelName, op, values)
	if err != nil {
		return "", fmt.Errorf("select bottles %s: %w", strings.Join(scope.Bottles, ", "), err)
	}
	return labels.NewSelector().Add(*req).String(), nil
}

// explain adds what to do to an error of the API.
func explain(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w\nthe kubeconfig's user lacks a permission bottle-apply needs: see examples/kubernetes-rbac.yaml", err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w\nthe cluster refused the kubeconfig's credentials: log in again (kubectl get ns tells)", err)
	}
	return err
}

// judge sets the workloads' state from their pods: running when a pod of
// theirs runs, failed when the agent's bundle address is not its bundle
// Service's any more.
func judge(rs []reconcile.Resource, pods []corev1.Pod) {
	svcIP := map[string]string{}
	for _, r := range rs {
		if r.Kind == KindService && r.Role == bottle.RoleBundle {
			svcIP[r.Bottle] = r.Summary["ip"]
		}
	}
	for i := range rs {
		r := &rs[i]
		if r.Kind != KindDeployment && r.Kind != KindStatefulSet {
			continue
		}
		r.State, r.Status = reconcile.StatePresent, "no pod"
		for _, pod := range pods {
			if pod.Namespace != r.Summary["namespace"] || pod.Labels[bottle.LabelName] != r.Bottle || pod.Labels[bottle.LabelRole] != r.Role {
				continue
			}
			r.Status = podStatus(&pod)
			if pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil {
				r.State = reconcile.StateRunning
			}
		}
		if r.Kind == KindStatefulSet && r.Managed {
			if want, ok := svcIP[r.Bottle]; ok && r.Summary["bundleIP"] != "" && r.Summary["bundleIP"] != want {
				r.State, r.Failure = reconcile.StateFailed, fmt.Sprintf("its bundle's address changed (%s → %s)", r.Summary["bundleIP"], want)
			}
		}
	}
}

// podStatus is a pod's state in kubectl's words: its phase, or why a
// container waits or ended.
func podStatus(pod *corev1.Pod) string {
	for _, cs := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" {
			return w.Reason
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			return fmt.Sprintf("%s (exit %d)", t.Reason, t.ExitCode)
		}
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.State.Running != nil {
			if cs.Name == containerConfined {
				return "waiting until its NetworkPolicy is enforced"
			}
			return "init container " + cs.Name + " running"
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
			return c.Reason
		}
	}
	if pod.DeletionTimestamp != nil {
		return "Terminating"
	}
	return strings.ToLower(string(pod.Status.Phase))
}

// objectMeta reads an object's ownership into a resource.
func objectMeta(kind string, m *metav1.ObjectMeta) reconcile.Resource {
	r := reconcile.Resource{
		Provider: ProviderName, Kind: kind, Bottle: m.Labels[bottle.LabelName], Role: m.Labels[bottle.LabelRole],
		Name: m.Name, Hash: m.Annotations[annHash], Inputs: reconcile.DecodeInputs(m.Annotations[annInputs]),
		Set: m.Labels[bottle.LabelSet], EngineID: string(m.UID), State: reconcile.StatePresent, Status: "present",
		Summary: map[string]string{}, Created: m.CreationTimestamp.Time,
	}
	if m.Namespace != "" {
		r.Summary["namespace"] = m.Namespace
	} else if kind == KindNamespace {
		r.Summary["namespace"] = m.Name
	}
	r.Managed = bottle.Owned(r.Bottle, r.Role, r.Hash)
	if m.DeletionTimestamp != nil {
		// Going: made again once it is gone.
		r.State, r.Failure, r.Status = reconcile.StateFailed, "being deleted", "terminating"
	}
	return r
}

// list lists the objects of kind that the selector selects, in every
// namespace.
func (c *Cluster) list(ctx context.Context, kind string, sel metav1.ListOptions) ([]reconcile.Resource, error) {
	var out []reconcile.Resource
	cs := c.Client
	switch kind {
	case KindNamespace:
		l, err := cs.CoreV1().Namespaces().List(ctx, sel)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			r := objectMeta(kind, &l.Items[i].ObjectMeta)
			r.Persistent = l.Items[i].Annotations[annPersistent] == "true"
			r.Summary["holds"] = "the bottle's volumes"
			r.Summary["remove"] = "kubectl delete namespace " + r.Name + ""
			out = append(out, r)
		}
	case KindPVC:
		l, err := cs.CoreV1().PersistentVolumeClaims("").List(ctx, sel)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			r := objectMeta(kind, &l.Items[i].ObjectMeta)
			r.Persistent = true
			r.Status = strings.ToLower(string(l.Items[i].Status.Phase))
			r.Summary["remove"] = "kubectl delete pvc -n " + r.Summary["namespace"] + " " + r.Name
			out = append(out, r)
		}
	case KindSecret:
		l, err := cs.CoreV1().Secrets("").List(ctx, sel)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out = append(out, objectMeta(kind, &l.Items[i].ObjectMeta))
		}
	case KindService:
		l, err := cs.CoreV1().Services("").List(ctx, sel)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			r := objectMeta(kind, &l.Items[i].ObjectMeta)
			r.Summary["ip"] = l.Items[i].Spec.ClusterIP
			out = append(out, r)
		}
	case KindNetworkPolicy:
		l, err := cs.NetworkingV1().NetworkPolicies("").List(ctx, sel)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out = append(out, objectMeta(kind, &l.Items[i].ObjectMeta))
		}
	case KindDeployment:
		l, err := cs.AppsV1().Deployments("").List(ctx, sel)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out = append(out, objectMeta(kind, &l.Items[i].ObjectMeta))
		}
	case KindStatefulSet:
		l, err := cs.AppsV1().StatefulSets("").List(ctx, sel)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out = append(out, statefulSet(&l.Items[i]))
		}
	default:
		return nil, fmt.Errorf("internal: no list for kind %s", kind)
	}
	return out, nil
}

func statefulSet(s *appsv1.StatefulSet) reconcile.Resource {
	r := objectMeta(KindStatefulSet, &s.ObjectMeta)
	r.Summary["bundleIP"] = s.Annotations[annBundleIP]
	return r
}

// annPersistent marks a namespace that holds the bottle's volumes.
const annPersistent = "io.bottle-apply.persistent"

// clusterInfo reads the cluster's ranges and resolver: the nodes' pod
// ranges and addresses, the ServiceCIDR API where served, the DNS
// Service in kube-system; flags stand in for what it does not tell.
func (c *Cluster) clusterInfo(ctx context.Context, o Options) (ClusterInfo, error) {
	var ci ClusterInfo
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return ci, fmt.Errorf("list the cluster's nodes (the bundle must never dial them) on %s: %w", c.Config.Host, explain(err))
	}
	for _, n := range nodes.Items {
		ci.PodCIDRs = append(ci.PodCIDRs, n.Spec.PodCIDRs...)
		if n.Spec.PodCIDR != "" {
			ci.PodCIDRs = append(ci.PodCIDRs, n.Spec.PodCIDR)
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				ci.NodeAddrs = append(ci.NodeAddrs, a.Address)
			}
		}
	}
	if l, err := c.Client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{}); err == nil {
		for _, s := range l.Items {
			ci.ServiceCIDRs = append(ci.ServiceCIDRs, s.Spec.CIDRs...)
		}
	} else if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
		return ci, fmt.Errorf("list the cluster's service ranges on %s: %w", c.Config.Host, explain(err))
	}
	ci.PodCIDRs = append(ci.PodCIDRs, o.PodCIDRs...)
	ci.ServiceCIDRs = append(ci.ServiceCIDRs, o.ServiceCIDRs...)
	// The API server's own addresses: where a pod goes, after the
	// kubernetes Service's ClusterIP is translated.
	if l, err := c.Client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"}); err == nil {
		for _, es := range l.Items {
			for _, port := range es.Ports {
				for _, ep := range es.Endpoints {
					for _, a := range ep.Addresses {
						if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() && port.Port != nil {
							ci.APIServer = append(ci.APIServer, netip.AddrPortFrom(ip, uint16(*port.Port)).String())
						}
					}
				}
			}
		}
	} else if !apierrors.IsForbidden(err) {
		return ci, fmt.Errorf("look for the API server's addresses on %s: %w", c.Config.Host, explain(err))
	}
	if svc, err := c.Client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{}); err == nil {
		if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && ip.Is4() {
			ci.DNS, ci.DNSPods = ip.String(), svc.Spec.Selector
		}
	} else if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
		return ci, fmt.Errorf("look for the cluster's DNS on %s: %w", c.Config.Host, explain(err))
	}
	for _, s := range [][]string{ci.PodCIDRs, ci.ServiceCIDRs, ci.NodeAddrs, ci.APIServer} {
		sort.Strings(s)
	}
	ci.PodCIDRs, ci.ServiceCIDRs, ci.NodeAddrs = slices.Compact(ci.PodCIDRs), slices.Compact(ci.ServiceCIDRs), slices.Compact(ci.NodeAddrs)
	ci.APIServer = slices.Compact(ci.APIServer)
	if len(ci.PodCIDRs) == 0 || len(ci.ServiceCIDRs) == 0 {
		return ci, errors.New("the cluster does not tell its pod range (nodes' podCIDRs) or its service range (the ServiceCIDR API): " +
			"give them with --kube-pod-cidr and --kube-service-cidr, so that the bundles refuse them")
	}
	return ci, nil
}

// Resolve implements reconcile.Provider: the bundle's address is its
// Service's ClusterIP, once the cluster has allocated it.
func (p *Provider) Resolve(bottles []*bottle.Bottle, _ []reconcile.Resource) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range bottles {
		if b.Spec.Backend != spec.BackendKubernetes {
			continue
		}
		if ip := p.bundleIPs[b.Metadata.Name]; ip != "" {
			b.Network.BundleIP = ip
		}
		b.Host = bottle.Host{Denied: p.info.denied()}
	}
	return nil
}

// Desired implements reconcile.Provider.
func (p *Provider) Desired(bottles []*bottle.Bottle, _ []reconcile.Resource) ([]reconcile.Resource, error) {
	p.mu.Lock()
	info := p.info
	p.mu.Unlock()
	var out []reconcile.Resource
	for _, b := range bottles {
		if b.Spec.Backend != spec.BackendKubernetes {
			continue
		}
		if !b.SecretsResolved() {
			return nil, fmt.Errorf("internal: bottle %s: the secrets of spec.agent.secretEnv were not read", b.Metadata.Name)
		}
		if !b.CredentialsResolved() {
			return nil, fmt.Errorf("internal: bottle %s: the credentials of spec.bundle.egress.credentials were not read", b.Metadata.Name)
		}
		rs, err := translate(b, info, p.opts.Version)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// observedDeps gives observed objects the dependencies their desired
// form has, which order deletes: a workload goes before the policy that
// isolates it (never an agent without its NetworkPolicy, not even while
// it terminates), before its Service, Secret and claims; the bundle before
// its credentials' Secret; everything before its namespace.
func observedDeps(rs []reconcile.Resource) {
	for i := range rs {
		r := &rs[i]
		if r.Kind != KindNamespace {
			r.DependsOn = append(r.DependsOn, resourceID(r.Bottle, KindNamespace, RoleNamespace))
		}
		switch r.Kind {
		case KindStatefulSet:
			r.DependsOn = append(r.DependsOn, resourceID(r.Bottle, KindNetworkPolicy, bottle.RoleAgent),
				resourceID(r.Bottle, KindService, bottle.RoleBundle), resourceID(r.Bottle, KindSecret, RoleFiles))
			for _, o := range rs {
				if o.Kind == KindPVC && o.Bottle == r.Bottle {
					r.DependsOn = append(r.DependsOn, o.ID())
				}
			}
		case KindDeployment:
			r.DependsOn = append(r.DependsOn, resourceID(r.Bottle, KindNetworkPolicy, bottle.RoleBundle),
				resourceID(r.Bottle, KindSecret, RoleCredentials))
		}
	}
}

// ownObjects drops the objects that wear a bottle's labels but are not
// where bottle-apply puts that bottle's objects, or not under the name it
// gives them: labels and annotations anyone may copy, and a look-alike
// must neither stand for the bottle's own (a decoy policy hiding a
// deleted one) nor be deleted with it. They are left alone, and said.
func (p *Provider) ownObjects(ctx context.Context, rs []reconcile.Resource) []reconcile.Resource {
	p.mu.Lock()
	nss := p.namespaces
	p.mu.Unlock()
	return slices.DeleteFunc(rs, func(r reconcile.Resource) bool {
		ns, known := nss[r.Bottle]
		if !known {
			return false
		}
		want := expectedName(r.Bottle, r.Kind, r.Role)
		if r.Summary["namespace"] == ns && r.Name == want {
			return false
		}
		zerolog.Ctx(ctx).Warn().Str("bottle", r.Bottle).Str("kind", r.Kind).Str("object", qualified(r.Summary["namespace"], r.Name)).
			Msgf("%s %s wears the labels of bottle %s but is not its own (that is %s in namespace %s): left alone",
				r.Kind, qualified(r.Summary["namespace"], r.Name), r.Bottle, want, ns)
		return true
	})
}

// expectedName is the name bottle-apply gives a bottle's object.
func expectedName(bottleName, kind, role string) string {
	switch kind {
	case KindNamespace:
		return bottle.NamePrefix + bottleName
	case KindPVC:
		return bottle.VolumeName(bottleName, role)
	}
	return bottle.ResourceName(bottleName, role)
}

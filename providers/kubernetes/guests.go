package kubernetes

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
)

// Guest returns the running agent or bundle of a bottle on the cluster.
func (p *Provider) Guest(ctx context.Context, bottleName, role string) (guest.Guest, error) {
	c, err := p.Cluster()
	if err != nil {
		return nil, err
	}
	pod, err := c.ownPod(ctx, bottleName, role)
	if err != nil {
		return nil, err
	}
	return c.Guest(pod, role, podUser(pod, role), fmt.Sprintf("the %s of bottle %s", role, bottleName)), nil
}

// BundleLogs streams the decision log of the bottle's bundle, following it
// with follow.
func (p *Provider) BundleLogs(ctx context.Context, bottleName string, follow bool) (io.ReadCloser, error) {
	c, err := p.Cluster()
	if err != nil {
		return nil, err
	}
	pod, err := c.ownPod(ctx, bottleName, bottle.RoleBundle)
	if err != nil {
		return nil, err
	}
	return c.Logs(ctx, pod, containerBundle, follow, -1)
}

// ownPod finds the running pod of a bottle's role that bottle-apply's
// workload made: labels anyone may wear, so the pod must be controlled by
// the bottle's own StatefulSet (the agent) or Deployment (the bundle), of
// the name bottle-apply gives it, with our config hash. A look-alike pod,
// in any namespace, is never exec'd into, copied to or read.
func (c *Cluster) ownPod(ctx context.Context, bottleName, role string) (*corev1.Pod, error) {
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labelsOf(bottleName, role)).String()}
	name := bottle.ResourceName(bottleName, role)
	type owner struct{ ns, uid, name string }
	var owners []owner
	switch role {
	case bottle.RoleAgent:
		l, err := c.Client.AppsV1().StatefulSets("").List(ctx, sel)
		if err != nil {
			return nil, fmt.Errorf("find the agent of bottle %s: %w", bottleName, explain(err))
		}
		for _, s := range l.Items {
			if s.Name == name && s.Annotations[annHash] != "" {
				owners = append(owners, owner{s.Namespace, string(s.UID), s.Name})
			}
		}
	default:
		l, err := c.Client.AppsV1().Deployments("").List(ctx, sel)
		if err != nil {
			return nil, fmt.Errorf("find the %s of bottle %s: %w", role, bottleName, explain(err))
		}
		for _, d := range l.Items {
			if d.Name == name && d.Annotations[annHash] != "" {
				owners = append(owners, owner{d.Namespace, string(d.UID), d.Name})
			}
		}
	}
	switch len(owners) {
	case 0:
		return nil, fmt.Errorf("bottle %s has no %s on the cluster (%w): apply its spec first (bottle-apply -f SPEC)", bottleName, role, ErrNoBottle)
	case 1:
	default:
		var nss []string
		for _, o := range owners {
			nss = append(nss, o.ns)
		}
		return nil, fmt.Errorf("bottle %s has a %s in several namespaces (%s): name the context of the one you mean with --context", bottleName, role, strings.Join(nss, ", "))
	}
	o := owners[0]
	pods, err := c.Client.CoreV1().Pods(o.ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("find the %s of bottle %s in namespace %s: %w", role, bottleName, o.ns, explain(err))
	}
	own := slices.DeleteFunc(slices.Clone(pods.Items), func(p corev1.Pod) bool { return !controlledBy(&p, role, o.uid, o.name) })
	return pickPod(own, o.ns, bottleName, role)
}

// controlledBy reports whether the workload of uid (a StatefulSet) or of
// name (a Deployment, through its ReplicaSet named after the pod's
// template hash) controls pod.
func controlledBy(pod *corev1.Pod, role, uid, name string) bool {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return false
	}
	if role == bottle.RoleAgent {
		return ref.Kind == "StatefulSet" && string(ref.UID) == uid
	}
	hash := pod.Labels["pod-template-hash"]
	return ref.Kind == "ReplicaSet" && hash != "" && ref.Name == name+"-"+hash
}

package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	netac "k8s.io/client-go/applyconfigurations/networking/v1"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// goneWithin bounds the wait for a deleted object to be gone: a pod's
// grace period, a namespace's finalizers.
const goneWithin = 3 * time.Minute

// Apply implements reconcile.Provider: server-side apply (field manager
// bottle-apply) for a create or a replace, after a look that the name is
// not another's; a delete waits until the object is gone, so that a
// destroy leaves nothing behind.
func (p *Provider) Apply(ctx context.Context, step reconcile.Step) error {
	c, err := p.Cluster()
	if err != nil {
		return err
	}
	r := &step.Resource
	switch step.Action {
	case reconcile.Delete:
		return c.remove(ctx, r.Kind, r.Summary["namespace"], r.Name)
	case reconcile.Create, reconcile.Replace, reconcile.Start:
	default:
		return fmt.Errorf("internal: action %s on %s", step.Action, r.ID())
	}
	obj, ok := r.Config.(object)
	if !ok {
		return fmt.Errorf("internal: %s has no kubernetes object", r.ID())
	}
	if o := step.Observed; o != nil && o.State == reconcile.StateFailed && o.Failure == "being deleted" {
		if err := c.waitGone(ctx, obj.Kind, obj.Namespace, obj.Name); err != nil {
			return err
		}
	}
	if step.Action == reconcile.Create {
		if err := c.refuseForeign(ctx, obj, r.Bottle, r.Role); err != nil {
			return err
		}
	}
	if err := p.apply(ctx, c, r.Bottle, obj); err != nil {
		return fmt.Errorf("apply %s %s: %w", obj.Kind, qualified(obj.Namespace, obj.Name), explainApply(err, obj))
	}
	if obj.Kind == KindStatefulSet && step.Action == reconcile.Replace {
		// The controller does not roll a pod that never became ready;
		// the pod is made anew from the new template at once.
		err := c.Client.CoreV1().Pods(obj.Namespace).Delete(ctx, obj.Name+"-0", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replace the agent pod %s: %w", qualified(obj.Namespace, obj.Name+"-0"), err)
		}
	}
	return nil
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// explainApply says what to do about a failed apply.
func explainApply(err error, obj object) error {
	if apierrors.IsNotFound(err) && obj.Namespace != "" {
		return fmt.Errorf("%w\nnamespace %s does not exist: create it, or leave spec.kubernetes.namespace empty for a namespace of the bottle's own", err, obj.Namespace)
	}
	return explain(err)
}

func (p *Provider) apply(ctx context.Context, c *Cluster, bottleName string, obj object) error {
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	cs := c.Client
	switch ac := obj.Apply.(type) {
	case *coreac.NamespaceApplyConfiguration:
		_, err := cs.CoreV1().Namespaces().Apply(ctx, ac, opts)
		return err
	case *coreac.PersistentVolumeClaimApplyConfiguration:
		_, err := cs.CoreV1().PersistentVolumeClaims(obj.Namespace).Apply(ctx, ac, opts)
		return err
	case *coreac.SecretApplyConfiguration:
		_, err := cs.CoreV1().Secrets(obj.Namespace).Apply(ctx, ac, opts)
		return err
	case *coreac.ServiceApplyConfiguration:
		svc, err := cs.CoreV1().Services(obj.Namespace).Apply(ctx, ac, opts)
		if err == nil {
			p.mu.Lock()
			p.bundleIPs[bottleName] = svc.Spec.ClusterIP
			p.mu.Unlock()
		}
		return err
	case *netac.NetworkPolicyApplyConfiguration:
		_, err := cs.NetworkingV1().NetworkPolicies(obj.Namespace).Apply(ctx, ac, opts)
		return err
	case *appsac.DeploymentApplyConfiguration:
		_, err := cs.AppsV1().Deployments(obj.Namespace).Apply(ctx, ac, opts)
		return err
	}
	if obj.agent == nil {
		return fmt.Errorf("internal: no apply for %T", obj.Apply)
	}
	p.mu.Lock()
	ip := p.bundleIPs[bottleName]
	p.mu.Unlock()
	if ip == "" {
		svc, err := cs.CoreV1().Services(obj.Namespace).Get(ctx, bottle.ResourceName(bottleName, bottle.RoleBundle), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("find the bundle's address: %w", err)
		}
		ip = svc.Spec.ClusterIP
	}
	ac, err := obj.agent.render(ip)
	if err != nil {
		return err
	}
	_, err = cs.AppsV1().StatefulSets(obj.Namespace).Apply(ctx, ac, opts)
	return err
}

// meta reads the metadata of an object, or nil when there is none.
func (c *Cluster) meta(ctx context.Context, kind, ns, name string) (*metav1.ObjectMeta, error) {
	cs := c.Client
	get := metav1.GetOptions{}
	var (
		m   metav1.ObjectMeta
		err error
	)
	switch kind {
	case KindNamespace:
		var o *corev1.Namespace
		if o, err = cs.CoreV1().Namespaces().Get(ctx, name, get); err == nil {
			m = o.ObjectMeta
		}
	case KindPVC:
		var o *corev1.PersistentVolumeClaim
		if o, err = cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, get); err == nil {
			m = o.ObjectMeta
		}
	case KindSecret:
		var o *corev1.Secret
		if o, err = cs.CoreV1().Secrets(ns).Get(ctx, name, get); err == nil {
			m = o.ObjectMeta
		}
	case KindService:
		var o *corev1.Service
		if o, err = cs.CoreV1().Services(ns).Get(ctx, name, get); err == nil {
			m = o.ObjectMeta
		}
	case KindNetworkPolicy:
		o, gerr := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, get)
		if err = gerr; err == nil {
			m = o.ObjectMeta
		}
	case KindDeployment:
		o, gerr := cs.AppsV1().Deployments(ns).Get(ctx, name, get)
		if err = gerr; err == nil {
			m = o.ObjectMeta
		}
	case KindStatefulSet:
		o, gerr := cs.AppsV1().StatefulSets(ns).Get(ctx, name, get)
		if err = gerr; err == nil {
			m = o.ObjectMeta
		}
	default:
		return nil, fmt.Errorf("internal: no get for kind %s", kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// refuseForeign refuses to apply over an object of the same name that is
// not this bottle's: server-side apply would take it over.
func (c *Cluster) refuseForeign(ctx context.Context, obj object, bottleName, role string) error {
	m, err := c.meta(ctx, obj.Kind, obj.Namespace, obj.Name)
	if err != nil {
		return fmt.Errorf("look at %s %s: %w", obj.Kind, qualified(obj.Namespace, obj.Name), explain(err))
	}
	if m == nil {
		return nil
	}
	owner := m.Labels[bottle.LabelName]
	if bottle.Owned(owner, m.Labels[bottle.LabelRole], m.Annotations[annHash]) && owner == bottleName && m.Labels[bottle.LabelRole] == role {
		return nil
	}
	return fmt.Errorf("%s %s exists and is not bottle %s's: %w; it is left alone: rename the bottle, or remove the %s yourself if it is a leftover",
		obj.Kind, qualified(obj.Namespace, obj.Name), bottleName, reconcile.ErrNotManaged, obj.Kind)
}

// remove deletes an object (its dependents in the foreground) and waits
// until it is gone.
func (c *Cluster) remove(ctx context.Context, kind, ns, name string) error {
	fg := metav1.DeletePropagationForeground
	opts := metav1.DeleteOptions{PropagationPolicy: &fg}
	cs := c.Client
	var err error
	switch kind {
	case KindNamespace:
		err = cs.CoreV1().Namespaces().Delete(ctx, name, opts)
	case KindPVC:
		err = cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, opts)
	case KindSecret:
		err = cs.CoreV1().Secrets(ns).Delete(ctx, name, opts)
	case KindService:
		err = cs.CoreV1().Services(ns).Delete(ctx, name, opts)
	case KindNetworkPolicy:
		err = cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, opts)
	case KindDeployment:
		err = cs.AppsV1().Deployments(ns).Delete(ctx, name, opts)
	case KindStatefulSet:
		err = cs.AppsV1().StatefulSets(ns).Delete(ctx, name, opts)
	default:
		return fmt.Errorf("internal: no delete for kind %s", kind)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s: %w", kind, qualified(ns, name), explain(err))
	}
	return c.waitGone(ctx, kind, ns, name)
}

// waitGone waits until an object is gone, for at most goneWithin.
func (c *Cluster) waitGone(ctx context.Context, kind, ns, name string) error {
	ctx, cancel := context.WithTimeout(ctx, goneWithin)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := c.meta(ctx, kind, ns, name)
		if err == nil && m == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s %s is still there %s after its deletion: look at its finalizers (kubectl get %s %s -o yaml)",
					kind, qualified(ns, name), goneWithin, kind, name)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

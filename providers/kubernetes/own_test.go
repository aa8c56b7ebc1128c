package kubernetes

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// TestOwnObjectsDropsLookAlikes: an object that wears a bottle's labels
// and a hash, but is not where bottle-apply puts the bottle's objects or
// not under their name, neither stands for the bottle's own (a decoy
// policy hiding a deleted one) nor is deleted with it.
func TestOwnObjectsDropsLookAlikes(t *testing.T) {
	t.Parallel()
	p := New(Options{})
	if err := p.Use([]bottle.Bottle{
		bottle.New(spec.Bottle{Metadata: spec.Metadata{Name: "own"}, Spec: spec.Spec{Backend: spec.BackendKubernetes}}),
		bottle.New(spec.Bottle{Metadata: spec.Metadata{Name: "lent"}, Spec: spec.Spec{Backend: spec.BackendKubernetes, Kubernetes: spec.Kubernetes{Namespace: "team"}}}),
	}); err != nil {
		t.Fatal(err)
	}
	obj := func(b, kind, role, ns, name string) reconcile.Resource {
		return reconcile.Resource{Provider: ProviderName, Kind: kind, Bottle: b, Role: role, Name: name, Hash: "h", Managed: true,
			Summary: map[string]string{"namespace": ns}}
	}
	kept := []reconcile.Resource{
		obj("own", KindNamespace, RoleNamespace, "bottle-own", "bottle-own"),
		obj("own", KindNetworkPolicy, bottle.RoleAgent, "bottle-own", "bottle-own-agent"),
		obj("own", KindPVC, "work", "bottle-own", "bottle-own-work"),
		obj("lent", KindStatefulSet, bottle.RoleAgent, "team", "bottle-lent-agent"),
		obj("other", KindService, bottle.RoleBundle, "x", "whatever"), // not of this run: not judged here
	}
	dropped := []reconcile.Resource{
		obj("own", KindNetworkPolicy, bottle.RoleAgent, "elsewhere", "bottle-own-agent"),
		obj("own", KindNetworkPolicy, bottle.RoleAgent, "bottle-own", "decoy"),
		obj("lent", KindNamespace, RoleNamespace, "bottle-lent", "bottle-lent"),
		obj("lent", KindStatefulSet, bottle.RoleAgent, "bottle-lent", "bottle-lent-agent"),
	}
	got := p.ownObjects(context.Background(), append(append([]reconcile.Resource{}, kept...), dropped...))
	if len(got) != len(kept) {
		t.Fatalf("ownObjects kept %d, want %d: %+v", len(got), len(kept), got)
	}
	for i := range kept {
		if got[i].ID() != kept[i].ID() || got[i].Summary["namespace"] != kept[i].Summary["namespace"] || got[i].Name != kept[i].Name {
			t.Errorf("kept %s in %s, want %s in %s", got[i].Name, got[i].Summary["namespace"], kept[i].Name, kept[i].Summary["namespace"])
		}
	}
}

// TestControlledBy: exec, cp and logs go to a pod that the bottle's own
// workload controls, never to a look-alike wearing its labels.
func TestControlledBy(t *testing.T) {
	t.Parallel()
	ctrl := true
	pod := func(kind, name, uid, hash string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"pod-template-hash": hash}}}
		if kind != "" {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: name, UID: types.UID("u-" + uid), Controller: &ctrl}}
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		role string
		want bool
	}{
		{"the StatefulSet's pod", pod("StatefulSet", "bottle-b-agent", "1", ""), bottle.RoleAgent, true},
		{"another StatefulSet's pod of that name", pod("StatefulSet", "bottle-b-agent", "2", ""), bottle.RoleAgent, false},
		{"a bare pod", pod("", "", "", ""), bottle.RoleAgent, false},
		{"the Deployment's pod", pod("ReplicaSet", "bottle-b-bundle-abc", "", "abc"), bottle.RoleBundle, true},
		{"another ReplicaSet's pod", pod("ReplicaSet", "decoy-abc", "", "abc"), bottle.RoleBundle, false},
		{"a bare pod as the bundle", pod("", "", "", "abc"), bottle.RoleBundle, false},
	} {
		if got := controlledBy(tc.pod, tc.role, "u-1", "bottle-b-"+tc.role); got != tc.want {
			t.Errorf("%s: controlledBy = %v, want %v", tc.name, got, tc.want)
		}
	}
}

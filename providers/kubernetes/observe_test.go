package kubernetes

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

func TestBottleSelector(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		scope reconcile.Scope
		want  string
	}{
		{name: "bottles", scope: reconcile.Scope{Bottles: []string{"b", "a"}}, want: bottle.LabelName + " in (a,b)"},
		{name: "all", scope: reconcile.Scope{All: true}, want: bottle.LabelName},
		{name: "all with bottles", scope: reconcile.Scope{Bottles: []string{"a"}, All: true}, want: bottle.LabelName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := bottleSelector(tt.scope)
			if err != nil || got != tt.want {
				t.Errorf("bottleSelector = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// Observe under scope.All returns the namespaces of every bottle, not a
// foreign one, with the same number of lists as for one bottle.
func TestObserveAll(t *testing.T) {
	t.Parallel()
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{annHash: "h"}}}
	}
	managed := func(b string) map[string]string {
		return map[string]string{bottle.LabelName: b, bottle.LabelRole: RoleNamespace}
	}
	tests := []struct {
		name  string
		scope reconcile.Scope
		want  []string
	}{
		{name: "one bottle", scope: reconcile.Scope{Bottles: []string{"a"}}, want: []string{"kubernetes-namespace:a/namespace"}},
		{name: "all", scope: reconcile.Scope{All: true},
			want: []string{"kubernetes-namespace:a/namespace", "kubernetes-namespace:b/namespace"}},
	}
	var calls []int
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(ns("bottle-a", managed("a")), ns("bottle-b", managed("b")), ns("team", map[string]string{"team": "x"}))
			p := New(Options{PodCIDRs: []string{"10.244.0.0/16"}, ServiceCIDRs: []string{"10.96.0.0/12"}})
			p.ConnectTo("")
			p.cluster = &Cluster{Client: cs}
			rs, err := p.Observe(t.Context(), tt.scope)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				if !r.Managed {
					t.Errorf("%s: unmanaged", r.ID())
				}
				got = append(got, r.ID())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("observed %q, want %q", got, tt.want)
			}
			calls = append(calls, len(lists(cs.Actions())))
		})
	}
	if len(calls) == 2 && calls[0] != calls[1] {
		t.Errorf("lists: %d for one bottle, %d for all; want the same", calls[0], calls[1])
	}
}

func lists(as []k8stesting.Action) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range as {
		if a.GetVerb() == "list" {
			out = append(out, a)
		}
	}
	return out
}

func TestObjectMetaCreated(t *testing.T) {
	t.Parallel()
	at := metav1.NewTime(time.Unix(1750000000, 0))
	r := objectMeta(KindNamespace, &metav1.ObjectMeta{Name: "bottle-a", CreationTimestamp: at})
	if !r.Created.Equal(at.Time) {
		t.Errorf("created %v, want the creationTimestamp %v", r.Created, at.Time)
	}
}

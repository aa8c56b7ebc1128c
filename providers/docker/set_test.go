package docker

import (
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// configLabels returns the labels a resource is created with.
func configLabels(t *testing.T, r reconcile.Resource) map[string]string {
	t.Helper()
	switch c := r.Config.(type) {
	case containerConfig:
		return c.Labels
	case networkConfig:
		return c.Labels
	case volumeConfig:
		return c.Labels
	}
	t.Fatalf("%s: no labels in %T", r.ID(), r.Config)
	return nil
}

// TestSetLabel: a bottle applied with a set has it on every resource, in
// its labels and in the desired resource; the hashes are those without a
// set, so that adding one replaces nothing.
func TestSetLabel(t *testing.T) {
	t.Parallel()
	withVolume := func() *bottle.Bottle {
		b := helloBottle()
		b.Spec.Agent.Volumes = []spec.Volume{{Source: "work", Target: "/work"}}
		return b
	}
	plain := byRole(translate(withVolume(), "img", "v"))
	for _, tc := range []struct{ name, set string }{{"without a set", ""}, {"with a set", "team-a"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := withVolume()
			b.Set = tc.set
			rs := translate(b, "img", "v")
			if len(rs) != 5 {
				t.Fatalf("translate made %d resources, want 5 (with the volume)", len(rs))
			}
			for _, r := range rs {
				l := configLabels(t, r)
				if got, ok := l[bottle.LabelSet]; got != tc.set || ok != (tc.set != "") {
					t.Errorf("%s: label %s = %q (present %v), want %q", r.ID(), bottle.LabelSet, got, ok, tc.set)
				}
				if r.Set != tc.set {
					t.Errorf("%s: Set = %q, want %q", r.ID(), r.Set, tc.set)
				}
				if want := plain[r.Role].Hash; r.Hash != want || l[bottle.LabelHash] != want {
					t.Errorf("%s: hash %s (label %s), want %s as without a set", r.ID(), r.Hash, l[bottle.LabelHash], want)
				}
			}
		})
	}
}

// TestObserveSet: what the labels say of the set is observed, for every
// kind.
func TestObserveSet(t *testing.T) {
	t.Parallel()
	b := helloBottle()
	b.Set = "team-a"
	b.Spec.Agent.Volumes = []spec.Volume{{Source: "work", Target: "/work"}}
	rs := byRole(translate(b, "img", "v"))
	nets := []network.Summary{{Name: "bottle-hello-internal", ID: "n1", Labels: configLabels(t, rs[bottle.RoleInternal])}}
	ctrs := []container.Summary{
		{Names: []string{"/bottle-hello-agent"}, ID: "c1", Labels: configLabels(t, rs[bottle.RoleAgent])},
		{Names: []string{"/bottle-hello-bundle"}, ID: "c2", Labels: map[string]string{bottle.LabelName: "hello", bottle.LabelRole: "bundle", bottle.LabelHash: "h"}},
	}
	vols := []*volume.Volume{{Name: "bottle-hello-work", Labels: configLabels(t, rs["work"])}}
	got := append(observed(nets, ctrs), observedVolumes(vols, reconcile.Scope{Bottles: []string{"hello"}})...)
	want := map[string]string{"docker-network:hello/internal": "team-a", "docker-container:hello/agent": "team-a",
		"docker-container:hello/bundle": "", "docker-volume:hello/work": "team-a"}
	if len(got) != len(want) {
		t.Fatalf("observed %d resources, want %d", len(got), len(want))
	}
	for _, r := range got {
		if !r.Managed || r.Set != want[r.ID()] {
			t.Errorf("%s: managed %v, set %q; want managed, set %q", r.ID(), r.Managed, r.Set, want[r.ID()])
		}
	}
}

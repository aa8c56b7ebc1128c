package docker

import (
	"debug/elf"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

func TestNormalRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref, want string
		ok        bool
	}{
		{"alpine", "docker.io/library/alpine:latest", true},
		{"alpine:3.20", "docker.io/library/alpine:3.20", true},
		{"docker.io/library/alpine:latest", "docker.io/library/alpine:latest", true},
		{"bottle-apply/bundle:abc", "docker.io/bottle-apply/bundle:abc", true},
		{"localhost:5000/team/agent:v1", "localhost:5000/team/agent:v1", true},
		// Content cannot change under a digest: nothing to compare.
		{"alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "", false},
		{"<none>:<none>", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			t.Parallel()
			got, ok := normalRef(tt.ref)
			if got != tt.want || ok != tt.ok {
				t.Errorf("normalRef(%q) = %q, %v; want %q, %v", tt.ref, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestIndexImages(t *testing.T) {
	t.Parallel()
	ours := map[string]string{bottle.LabelVersion: "v1"}
	imgs := []image.Summary{
		{ID: "sha256:a", RepoTags: []string{"alpine:latest", "mine:v1"}},
		{ID: "sha256:b", RepoTags: []string{"bottle-apply/bundle:new"}, Labels: ours, Created: 200},
		{ID: "sha256:c", RepoTags: []string{"bottle-apply/bundle:old"}, Labels: ours, Created: 100},
		// Tagged there, but not made by bottle-apply: never ours.
		{ID: "sha256:d", RepoTags: []string{"bottle-apply/bundle:custom"}},
		// Ours by label, in another repository: not a built-in image.
		{ID: "sha256:e", RepoTags: []string{"other/bundle:x"}, Labels: ours},
		{ID: "sha256:f", RepoTags: []string{"<none>:<none>"}},
	}
	idx := indexImages(imgs, repoOf("bottle-apply/bundle:new"))
	for ref, want := range map[string]string{
		"alpine": "sha256:a", "docker.io/library/alpine": "sha256:a", "mine:v1": "sha256:a",
		"bottle-apply/bundle:custom": "sha256:d", "missing:1": "", "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": "",
	} {
		if got := idx.id(ref); got != want {
			t.Errorf("id(%q) = %q, want %q", ref, got, want)
		}
	}
	want := []bundleImage{
		{Ref: "bottle-apply/bundle:new", ID: "sha256:b", Created: time.Unix(200, 0)},
		{Ref: "bottle-apply/bundle:old", ID: "sha256:c", Created: time.Unix(100, 0)},
	}
	if !slices.Equal(idx.bundles, want) {
		t.Errorf("bundles = %+v, want %+v", idx.bundles, want)
	}
	var none *imageIndex
	if got := none.id("alpine"); got != "" {
		t.Errorf("id before any list = %q, want empty", got)
	}
}

// TestRebuiltImage: an image rebuilt under the same tag replaces what runs
// it on the next apply, saying so; the built-in bundle image, named after
// its builds, never does; and a no-op apply costs one list more, the images.
func TestRebuiltImage(t *testing.T) {
	t.Parallel()
	const newID = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name       string
		userBundle bool                // spec.bundle.image set to "bundle:1"
		change     func(f *fakeEngine) // between the applies
		want       map[string]string   // role -> "Action, reason" of the changed steps
	}{
		{name: "agent rebuilt", change: func(f *fakeEngine) { f.imageIDs["agent:1"] = newID },
			want: map[string]string{bottle.RoleAgent: "Replace, image changed (sha256:agent:1 → sha256:0123456789ab…)"}},
		{name: "user bundle image rebuilt", userBundle: true, change: func(f *fakeEngine) { f.imageIDs["bundle:1"] = newID },
			want: map[string]string{bottle.RoleBundle: "Replace, image changed (sha256:bundle:1 → sha256:0123456789ab…)"}},
		{name: "built-in bundle image imported again", change: func(f *fakeEngine) { f.imageIDs[bundleRef] = newID },
			want: map[string]string{}},
		{name: "agent image removed locally", change: func(f *fakeEngine) { delete(f.images, "agent:1") },
			want: map[string]string{}},
		{name: "nothing", change: func(*fakeEngine) {}, want: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			f.images["agent:1"], f.images["bundle:1"] = true, true
			b := helloBottle()
			if tt.userBundle {
				b.Spec.Bundle.Image = "bundle:1"
			}
			p := newProvider(f, Options{BundleImage: bundleRef, BundleBinary: testenv.FakeBundleBuilds(t, elf.EM_X86_64).Path})
			bs := []bottle.Bottle{*b}
			if res, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, bs, reconcile.Options{}); err != nil || !res.Converged {
				t.Fatalf("first apply: %v", err)
			}
			tt.change(f)
			before := len(f.callLog())
			res, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, bs, reconcile.Options{})
			if err != nil || !res.Converged {
				t.Fatalf("second apply: %v", err)
			}
			got := map[string]string{}
			for _, s := range res.Plan.Steps {
				if s.Action != reconcile.NoOp {
					got[s.Resource.Role] = s.Action.String() + ", " + s.Reason
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("changes = %q, want %q", got, tt.want)
			}
			for role, want := range tt.want {
				if got[role] != want {
					t.Errorf("%s: %q, want %q", role, got[role], want)
				}
			}
			if len(tt.want) == 0 {
				calls := slices.Sorted(slices.Values(f.callLog()[before:]))
				if want := []string{"ContainerList", "ImageList", "NetworkList", "VolumeList"}; !slices.Equal(calls, want) {
					t.Errorf("no-op apply calls = %q, want %q", calls, want)
				}
			}
		})
	}
}

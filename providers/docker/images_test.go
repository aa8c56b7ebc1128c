package docker

import (
	"debug/elf"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
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

// TestPruneBundleImages: the built-in bundle images of other builds go
// once no container uses them and they are older than the grace; the
// current one, foreign ones, recent ones and used ones stay.
func TestPruneBundleImages(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	old, recent := now.Add(-2*BundleImageGrace), now.Add(-BundleImageGrace/2)
	ours := map[string]string{bottle.LabelVersion: "v0"}
	type img struct {
		ref     string
		labels  map[string]string
		created time.Time
		id      string // "" for the fake's own
	}
	tests := []struct {
		name      string
		images    []img
		usedBy    map[string]string // container name -> the ref it runs
		listFails bool
		wantGone  []string
		wantCalls []string
		wantErr   string
	}{
		{name: "nothing old: no call", images: []img{{ref: bundleRef, labels: ours, created: old}, {ref: "bottle-apply/bundle:new", labels: ours, created: recent}},
			wantCalls: nil},
		{name: "an old unused one goes", images: []img{{ref: bundleRef, labels: ours, created: recent}, {ref: "bottle-apply/bundle:old", labels: ours, created: old}},
			wantGone: []string{"bottle-apply/bundle:old"}, wantCalls: []string{"ContainerList", "ImageRemove bottle-apply/bundle:old"}},
		{name: "an old one a container uses stays", images: []img{{ref: "bottle-apply/bundle:old", labels: ours, created: old}, {ref: "bottle-apply/bundle:older", labels: ours, created: old}},
			usedBy: map[string]string{"bottle-x-bundle": "bottle-apply/bundle:old"}, wantGone: []string{"bottle-apply/bundle:older"},
			wantCalls: []string{"ContainerList", "ImageRemove bottle-apply/bundle:older"}},
		{name: "foreign images stay", images: []img{
			{ref: "bottle-apply/bundle:custom", created: old},       // no label: not made by bottle-apply
			{ref: "someone/bundle:old", labels: ours, created: old}, // another repository
			{ref: "agent:1", created: old},
		}, wantCalls: nil},
		{name: "the current content under an old tag stays", images: []img{{ref: bundleRef, labels: ours, created: old, id: "sha256:same"}, {ref: "bottle-apply/bundle:old", labels: ours, created: old, id: "sha256:same"}},
			wantCalls: nil},
		{name: "a failed list removes nothing", images: []img{{ref: "bottle-apply/bundle:old", labels: ours, created: old}}, listFails: true,
			wantCalls: []string{"ContainerList"}, wantErr: "list the containers of old built-in bundle images"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			for _, i := range tt.images {
				f.images[i.ref], f.imageLabels[i.ref], f.imageCreated[i.ref] = true, i.labels, i.created
				if i.id != "" {
					f.imageIDs[i.ref] = i.id
				}
			}
			for name, ref := range tt.usedBy {
				f.containers[name] = container.Summary{ID: "id-" + name, Names: []string{"/" + name}, Image: ref, ImageID: f.imageID(ref), State: "exited"}
			}
			p := newProvider(f, Options{BundleImage: bundleRef})
			if _, err := p.Observe(t.Context(), reconcile.Scope{Bottles: []string{"hello"}}); err != nil {
				t.Fatal(err)
			}
			if tt.listFails {
				f.fail["ContainerList"] = errors.New("EOF")
			}
			before := len(f.callLog())
			err := p.PruneBundleImages(t.Context(), now)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("PruneBundleImages = %v, want error %q", err, tt.wantErr)
			}
			if calls := f.callLog()[before:]; !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", calls, tt.wantCalls)
			}
			for _, i := range tt.images {
				if gone := slices.Contains(tt.wantGone, i.ref); f.images[i.ref] == gone {
					t.Errorf("%s: present = %v, want %v", i.ref, f.images[i.ref], !gone)
				}
			}
		})
	}
}

func TestPruneBundleImagesBeforeAnyList(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	if err := newProvider(f, Options{BundleImage: bundleRef}).PruneBundleImages(t.Context(), time.Now()); err != nil || len(f.callLog()) != 0 {
		t.Errorf("PruneBundleImages = %v with calls %q, want nothing done", err, f.callLog())
	}
}

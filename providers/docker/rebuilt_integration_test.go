package docker

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// TestIntegrationRebuiltImage: the agent image rebuilt under its tag
// replaces the agent on the next apply, saying both IDs, and the new agent
// runs the new content; an apply with nothing rebuilt is a no-op of four
// lists.
func TestIntegrationRebuiltImage(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	b := e.newBottle(t, "")
	e.run(t, []bottle.Bottle{b}, false)
	before := e.look(t, b.Metadata.Name).ctrs[bottle.RoleAgent]
	oldID := before.ImageID

	// Nothing rebuilt: no change, and the image list is the one call more.
	e.cnt.Reset()
	res := e.run(t, []bottle.Bottle{b}, false)
	calls := e.cnt.Reset()
	if res.Plan.Changes() != 0 {
		t.Fatalf("apply with the same image planned:\n%s", res.Plan)
	}
	slices.Sort(calls)
	if want := []string{"GET /containers/json", "GET /images/json", "GET /networks", "GET /volumes"}; !slices.Equal(calls, want) {
		t.Errorf("no-op apply calls = %q, want %q", calls, want)
	}

	testenv.RebuildAgentImage(t, e.c, e.agent, t.Name())
	img, err := e.c.ImageInspect(t.Context(), e.agent)
	if err != nil {
		t.Fatal(err)
	}
	newID := img.ID
	if newID == oldID {
		t.Fatalf("the rebuilt image has the old ID %s", oldID)
	}
	res = e.run(t, []bottle.Bottle{b}, false)
	wantSteps(t, res, "Replace agent: image changed ("+oldID[:19]+"… → "+newID[:19]+"…)")
	after := e.look(t, b.Metadata.Name).ctrs[bottle.RoleAgent]
	if after.ID == before.ID || after.ImageID != newID || after.State != "running" {
		t.Errorf("agent after the rebuild: %s on %s (%s), want a new one on %s, running", after.ID, after.ImageID, after.State, newID)
	}
	if res := e.run(t, []bottle.Bottle{b}, false); res.Plan.Changes() != 0 {
		t.Fatalf("apply after the replace planned:\n%s", res.Plan)
	}
}

// TestIntegrationPruneBundleImages: after an apply, the built-in bundle
// images of older builds that no container uses are removed; the current
// one, one a container uses, a recent one and one bottle-apply did not
// make stay.
func TestIntegrationPruneBundleImages(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	// A repository of this test's own, so that no other test's images
	// are candidates.
	repo := "bottle-apply-test/" + testenv.Name("prune")
	e.p.opts.BundleImage = repo + ":current"
	t.Cleanup(func() {
		_, _ = e.c.ImageRemove(context.Background(), repo+":current", image.RemoveOptions{Force: true})
	})
	ours := map[string]string{bottle.LabelVersion: "old"}
	longAgo := time.Now().Add(-2 * BundleImageGrace)
	unused := testenv.LoadDatedImage(t, e.c, repo+":old-unused", longAgo, ours)
	used := testenv.LoadDatedImage(t, e.c, repo+":old-used", longAgo.Add(time.Minute), ours)
	testenv.LoadDatedImage(t, e.c, repo+":recent", time.Now(), ours)
	testenv.LoadDatedImage(t, e.c, repo+":not-ours", longAgo.Add(2*time.Minute), nil)
	if unused == used {
		t.Fatalf("the two old images have one ID %s", used)
	}
	user := testenv.Name("user")
	ctr, err := e.c.ContainerCreate(t.Context(), &container.Config{Image: repo + ":old-used"}, nil, nil, nil, user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.c.ContainerRemove(context.Background(), ctr.ID, container.RemoveOptions{Force: true})
	})

	b := e.newBottle(t, "")
	e.run(t, []bottle.Bottle{b}, false)
	if err := e.p.PruneBundleImages(t.Context(), time.Now()); err != nil {
		t.Fatalf("PruneBundleImages: %v", err)
	}
	for tag, want := range map[string]bool{"current": true, "old-unused": false, "old-used": true, "recent": true, "not-ours": true} {
		_, err := e.c.ImageInspect(t.Context(), repo+":"+tag)
		if got := err == nil; got != want {
			t.Errorf("%s:%s present = %v (%v), want %v", repo, tag, got, err, want)
		}
	}
	// Once its container is gone, the old image goes too.
	if err := e.c.ContainerRemove(t.Context(), ctr.ID, container.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	e.run(t, []bottle.Bottle{b}, false)
	if err := e.p.PruneBundleImages(t.Context(), time.Now()); err != nil {
		t.Fatalf("PruneBundleImages: %v", err)
	}
	if _, err := e.c.ImageInspect(t.Context(), repo+":old-used"); err == nil || !strings.Contains(err.Error(), "No such image") {
		t.Errorf("old-used after its container was removed: inspect = %v, want no such image", err)
	}
}

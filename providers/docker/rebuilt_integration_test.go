package docker

import (
	"slices"
	"testing"

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

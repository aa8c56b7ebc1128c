package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// TestE2ERebuiltImages: the first apply removes a built-in bundle image an
// older build left, saying so; an apply with the agent's image unchanged
// changes nothing; the image rebuilt under its tag replaces the agent, whose
// new container runs the new content, and the apply after is a no-op.
//
// Not parallel: every apply removes old built-in bundle images, and one of
// another test, made meanwhile, would take the old image and say so itself.
func TestE2ERebuiltImages(t *testing.T) {
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "hello.yaml", img)
	agentName := "bottle-" + name + "-agent"

	// An older build's bundle image, unused and two days old.
	old := bundleimage.Repo + ":" + testenv.Name("e2e-old")
	testenv.LoadDatedImage(t, c, old, time.Now().Add(-48*time.Hour), map[string]string{bottle.LabelVersion: "old"})

	code, out, errs := cli(t, bin, "", "-f", path, "--no-verify")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "removed an old built-in bundle image that no container uses") || !strings.Contains(errs, old) {
		t.Errorf("apply did not log the removal of %s:\n%s", old, errs)
	}
	if _, err := c.ImageInspect(t.Context(), old); err == nil {
		t.Errorf("%s is still there after the apply", old)
	}
	agentID := containerID(t, c, agentName)
	before, err := c.ImageInspect(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}

	// The same image: nothing to do.
	if code, out, errs := cli(t, bin, "", "-f", path, "--detailed-exitcode"); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("apply with the image unchanged: exit %d\n%s\n%s", code, out, errs)
	}
	if id := containerID(t, c, agentName); id != agentID {
		t.Fatal("the apply with the image unchanged replaced the agent")
	}

	// Rebuilt under its tag: the agent is replaced, saying both IDs.
	testenv.RebuildAgentImage(t, c, img, name)
	after, err := c.ImageInspect(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = cli(t, bin, "", "-f", path, "--no-verify")
	want := "-/+ docker-container:" + name + "/agent  image changed (" + before.ID[:19] + "… → " + after.ID[:19] + "…)"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "Plan: 0 to create, 0 to start, 1 to replace, 0 to delete.") {
		t.Fatalf("apply after the rebuild: exit %d, want a line\n%s\nin\n%s\n%s", code, want, out, errs)
	}
	t.Logf("apply after the rebuild:\n%s", out)
	newAgent := containerID(t, c, agentName)
	if newAgent == agentID {
		t.Fatal("the agent was not replaced")
	}
	ctr, err := c.ContainerInspect(t.Context(), newAgent)
	if err != nil {
		t.Fatal(err)
	}
	if ctr.Image != after.ID {
		t.Errorf("the new agent runs %s, want the rebuilt %s", ctr.Image, after.ID)
	}
	if code, out, errs := cli(t, bin, "", "-f", path, "--detailed-exitcode"); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("apply after the replace: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := cli(t, bin, "", "-f", path, "--destroy"); code != 0 {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}
}

package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// pruneSpec writes a docker bottle into dir, with a named volume when
// volume is set.
func pruneSpec(t *testing.T, dir, name, image string, volume bool) {
	t.Helper()
	vols := ""
	if volume {
		vols = "    volumes:\n      - work:/data\n"
	}
	s := fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s
spec:
  backend: docker
  agent:
    image: %s
    command: ["sleep", "infinity"]
    workdir: /
%s  bundle:
    daemons: []
`, name, image, vols)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// engineIDs are the IDs of every container and network named like the
// bottle's resources (labelled or not), by name: what must not change for
// a bottle a prune leaves alone.
func engineIDs(t *testing.T, c *client.Client, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	cs, err := c.ContainerList(t.Context(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("name", "^/"+bottle.NamePrefix+name+"-"))})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range cs {
		out["container "+strings.Join(x.Names, ",")] = x.ID
	}
	ns, err := c.NetworkList(t.Context(), network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "^"+bottle.NamePrefix+name+"-"))})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		out["network "+n.Name] = n.ID
	}
	return out
}

// TestE2EPrune proves that a prune deletes the bottles of its spec set
// that left the specs, and nothing else: not a bottle of another set, not
// one without a set (even when the set was later given to it), not a
// hand-made container named and labelled like a bottle's. A pruned
// bottle's named volume is kept, and goes with --volumes. A bottle of
// another set is refused, not moved.
func TestE2EPrune(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	setA, setB := testenv.Name("set-a"), testenv.Name("set-b")
	a1, a2, b1, n1, hand := testenv.Name("pa"), testenv.Name("pa"), testenv.Name("pb"), testenv.Name("pn"), testenv.Name("ph")
	for _, n := range []string{a1, a2, b1, n1, hand} {
		testenv.CleanupBottle(t, c, n)
	}
	root := t.TempDir()
	dirA, dirB, dirN := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "n")
	pruneSpec(t, dirA, a1, img, false)
	pruneSpec(t, dirA, a2, img, true)
	pruneSpec(t, dirB, b1, img, false)
	pruneSpec(t, dirN, n1, img, false)

	apply := func(what string, args ...string) string {
		t.Helper()
		code, out, errs := cli(t, bin, "", append(args, "--no-verify", "--ready-wait", "0")...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", what, code, out, errs)
		}
		return out + errs
	}
	apply("apply set A", "-f", dirA, "--set", setA)
	apply("apply set B", "-f", dirB, "--set", setB)
	apply("apply without a set", "-f", dirN)

	// A hand-made container named like a bottle's agent, with the set's
	// and a bottle's name label but no config hash: not bottle-apply's.
	resp, err := c.ContainerCreate(t.Context(), &container.Config{Image: img, Cmd: []string{"sleep", "infinity"},
		Labels: map[string]string{bottle.LabelSet: setA, bottle.LabelName: hand, bottle.LabelRole: bottle.RoleAgent}},
		nil, nil, nil, bottle.ResourceName(hand, bottle.RoleAgent))
	if err != nil {
		t.Fatal(err)
	}
	volume := bottle.VolumeName(a2, "work")
	if !volumeExists(t, c, volume) {
		t.Fatalf("volume %s was not made", volume)
	}

	// Every resource of set A's bottles carries the set; the others none.
	for name, want := range map[string]string{a1: setA, a2: setA, b1: setB, n1: ""} {
		cs, err := c.ContainerList(t.Context(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+name))})
		if err != nil || len(cs) != 2 {
			t.Fatalf("containers of %s: %v (%d)", name, err, len(cs))
		}
		for _, x := range cs {
			if x.Labels[bottle.LabelSet] != want {
				t.Errorf("container %s: set %q, want %q", x.Names[0], x.Labels[bottle.LabelSet], want)
			}
		}
	}
	if v, err := c.VolumeInspect(t.Context(), volume); err != nil || v.Labels[bottle.LabelSet] != setA {
		t.Fatalf("volume %s: %v, labels %v", volume, err, v.Labels)
	}

	// Giving a set to a bottle made without one replaces nothing and
	// says that it stays out of the set's prunes.
	if out := apply("apply set A to the bottle without a set", "-f", dirN, "--set", setA); !strings.Contains(out, "No changes.") ||
		!strings.Contains(out, "bottle "+n1+" carries no spec set yet") {
		t.Fatalf("the set given to %s: want no changes and a warning:\n%s", n1, out)
	}
	// A bottle of set B is not moved to A: refused, nothing changed.
	before := map[string]map[string]string{}
	for _, n := range []string{a1, b1, n1, hand} {
		before[n] = engineIDs(t, c, n)
	}
	if code, out, errs := cli(t, bin, "", "-f", dirB, "--set", setA); code != 1 ||
		!strings.Contains(errs, "bottle belongs to another spec set") || !strings.Contains(errs, "destroy it") {
		t.Fatalf("set A on set B's bottle: exit %d, want 1 and a refusal\n%s\n%s", code, out, errs)
	}

	// a2 leaves set A's specs.
	if err := os.Remove(filepath.Join(dirA, a2+".yaml")); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, bin, "", "-f", dirA, "--set", setA, "--prune", "--dry-run", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, "-   docker-container:"+a2+"/agent") || !strings.Contains(out, "not in spec set "+setA) ||
		!strings.Contains(out, "Plan: 0 to create, 0 to start, 0 to replace, 4 to delete.") || !strings.Contains(out, "docker-volume:"+a2+"/work") {
		t.Fatalf("dry run of the prune: exit %d\n%s\n%s", code, out, errs)
	}
	if left := testenv.Leftovers(t, c, a2); len(left) != 4 {
		t.Fatalf("the dry run changed %s: left %q", a2, left)
	}

	out = apply("prune", "-f", dirA, "--set", setA, "--prune")
	if !strings.Contains(out, "0 created, 0 started, 0 replaced, 4 deleted") {
		t.Errorf("prune: want 4 deleted:\n%s", out)
	}
	if left := testenv.Leftovers(t, c, a2); len(left) != 0 {
		t.Errorf("left of %s after the prune: %q", a2, left)
	}
	if !volumeExists(t, c, volume) {
		t.Error("the prune without --volumes removed the named volume")
	}
	unchanged := func(when string) {
		t.Helper()
		for n, ids := range before {
			if now := engineIDs(t, c, n); len(ids) == 0 || !maps.Equal(now, ids) {
				t.Errorf("%s: %s changed: %v, was %v", when, n, now, ids)
			}
		}
	}
	unchanged("after the prune")
	if !slices.Contains(slices.Collect(maps.Values(before[hand])), resp.ID) {
		t.Errorf("the hand-made container is not among %v", before[hand])
	}

	// Again with --volumes: the volume left of a2 goes, nothing else.
	out = apply("prune --volumes", "-f", dirA, "--set", setA, "--prune", "--volumes")
	if !strings.Contains(out, "-   docker-volume:"+a2+"/work") || !strings.Contains(out, "1 deleted") {
		t.Errorf("prune --volumes: want the volume deleted:\n%s", out)
	}
	if volumeExists(t, c, volume) {
		t.Error("prune --volumes left the named volume")
	}
	unchanged("after the prune --volumes")

	// Nothing is left to prune.
	if code, out, _ := cli(t, bin, "", "-f", dirA, "--set", setA, "--prune", "--detailed-exitcode"); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("third prune: exit %d\n%s", code, out)
	}
}

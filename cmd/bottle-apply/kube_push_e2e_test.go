package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// TestKubeE2EPushedBundle: the built-in bundle image that bundle push
// puts in a registry is what the cluster pulls and runs: a bottle naming
// the pinned reference it printed gets ready and passes the self-test.
func TestKubeE2EPushedBundle(t *testing.T) {
	k := testenv.Kube(t)
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	k.StartRegistry(t)
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	code, out, errs := runCLI(t, bin, "", env, "bundle", "push", k.Registry+"/bottle-apply/bundle", "--insecure", "-o", "json")
	if code != 0 {
		t.Fatalf("bundle push: exit %d\n%s%s", code, out, errs)
	}
	var pushed struct{ Pinned string }
	if err := json.Unmarshal([]byte(out), &pushed); err != nil || !strings.Contains(pushed.Pinned, "@sha256:") {
		t.Fatalf("bundle push -o json: %q (%v)", out, err)
	}
	agent := testenv.AgentImage(t, c)
	k.LoadImage(t, agent)
	kb := newKubeBottle(t, k, agent, pushed.Pinned)
	kb.write(t, fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata: {name: %s}
spec:
  backend: kubernetes
  agent: {image: %s, command: ["sleep", "infinity"]}
  bundle: {image: "%s", daemons: [egress]}
`, kb.name, agent, pushed.Pinned))
	out, _ = kb.apply(t, bin, kb.env, 0)
	if !strings.Contains(out, "checks passed") {
		t.Errorf("the self-test did not pass with the pushed bundle:\n%s", out)
	}
	img := k.Kubectl(t, "", "-n", bottle.NamePrefix+kb.name, "get", "pods", "-l", bottle.LabelRole+"="+bottle.RoleBundle,
		"-o", "jsonpath={.items[*].status.containerStatuses[*].imageID}")
	if digest := pushed.Pinned[strings.Index(pushed.Pinned, "@")+1:]; !strings.Contains(img, digest) {
		t.Errorf("the bundle's pod runs %q, want the pushed %s", img, digest)
	}
}

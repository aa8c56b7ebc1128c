package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// TestKubeE2EBorrowedNamespace: a bottle in a namespace it borrows
// refuses an object of its name that is not its own (and leaves it as
// it was), fails an apply whose agent image cannot be pulled with the
// pod's own reason, and leaves the namespace when destroyed.
func TestKubeE2EBorrowedNamespace(t *testing.T) {
	k, bin, agent, bundle := kubeImages(t)
	kb := newKubeBottle(t, k, agent, bundle)
	ns := testenv.Name("borrowed")
	k.Kubectl(t, "", "create", "namespace", ns)
	t.Cleanup(func() { _, _ = k.TryKubectl("", "delete", "namespace", ns, "--wait=false") })
	spec := func(image string) string {
		return fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata: {name: %s}
spec:
  backend: kubernetes
  kubernetes: {namespace: %s}
  agent: {image: %s, command: ["sleep", "infinity"]}
  bundle: {image: %s, daemons: [egress]}
`, kb.name, ns, image, bundle)
	}
	svc := bottle.ResourceName(kb.name, bottle.RoleBundle)

	// Someone else's Service with the bundle's name.
	k.Kubectl(t, "", "-n", ns, "create", "service", "clusterip", svc, "--tcp=80:80")
	kb.write(t, spec(agent))
	_, errs := kb.apply(t, bin, kb.env, 1, "--no-verify")
	if !strings.Contains(errs, "service "+ns+"/"+svc+" exists and is not bottle "+kb.name+"'s") {
		t.Errorf("the foreign Service is not refused by name:\n%s", errs)
	}
	if labels := k.Kubectl(t, "", "-n", ns, "get", "service", svc, "-o", "jsonpath={.metadata.labels}"); strings.Contains(labels, "io.bottle-apply") {
		t.Errorf("the foreign Service was taken over: labels %s", labels)
	}
	k.Kubectl(t, "", "-n", ns, "delete", "service", svc)

	// An agent image the cluster cannot pull fails the apply, saying so.
	kb.write(t, spec("k8s.local/no-such-image:1"))
	_, errs = kb.apply(t, bin, kb.env, 1, "--no-verify", "--kube-ready-timeout", "2m")
	if !strings.Contains(errs, "the agent of bottle "+kb.name+" cannot start: its image cannot be pulled") {
		t.Errorf("an unpullable image does not fail the apply with its reason:\n%s", errs)
	}
	// Fixed, it converges; destroyed, the borrowed namespace stays.
	kb.write(t, spec(agent))
	kb.apply(t, bin, kb.env, 0)
	kb.apply(t, bin, kb.env, 0, "--destroy")
	if left := kb.labelled(t); left != "" {
		t.Errorf("after destroy, left: %s", left)
	}
	k.Kubectl(t, "", "get", "namespace", ns)
}

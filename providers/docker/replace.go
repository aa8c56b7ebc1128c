package docker

import (
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// explainReplace says, for the plan, what replacing each resource of the
// bottle keeps and what it loses.
func explainReplace(b *bottle.Bottle, rs []reconcile.Resource) {
	for i := range rs {
		r := &rs[i]
		switch {
		case r.Kind == KindVolume:
			// Never replaced.
		case r.Role == bottle.RoleBundle:
			r.Keeps = "the agent as it runs: the proxy and the resolver come back at the same address"
			r.Discards = "connections open through the proxy, and the old bundle's decision log"
		case r.Role == bottle.RoleAgent:
			r.Keeps, r.Discards = agentKeeps(b)
		case r.Role == bottle.RoleInternal, r.Role == bottle.RoleEgress:
			r.Discards = "nothing of its own: what is attached to it is replaced with it"
		}
	}
}

// agentKeeps says what a new agent keeps of the old one: the bottle's
// networks and bundle, and what is on its volumes; the rest of its
// filesystem is lost, and its files are written again.
func agentKeeps(b *bottle.Bottle) (keeps, discards string) {
	a := &b.Spec.Agent
	keeps = "the bottle's networks and bundle"
	discards = "the agent's processes, and every file written in its container"
	if len(a.Volumes) > 0 {
		kept := make([]string, len(a.Volumes))
		for i, v := range a.Volumes {
			if v.Named() {
				kept[i] = v.Target + " (volume " + bottle.VolumeName(b.Metadata.Name, v.Source) + ")"
			} else {
				kept[i] = v.Target + " (" + v.Source + " on the host)"
			}
		}
		keeps += ", and the files in " + strings.Join(kept, ", ")
		discards += " outside them"
	}
	if len(a.Files) > 0 {
		discards += "; spec.agent.files are written again"
	}
	return keeps, discards
}

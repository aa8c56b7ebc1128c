package docker

import (
	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// explainReplace says, for the plan, what replacing each resource keeps
// and what it loses.
func explainReplace(rs []reconcile.Resource) {
	for i := range rs {
		r := &rs[i]
		switch r.Role {
		case bottle.RoleBundle:
			r.Keeps = "the agent as it runs: the proxy and the resolver come back at the same address"
			r.Discards = "connections open through the proxy, and the old bundle's decision log"
		case bottle.RoleAgent:
			r.Keeps = "the bottle's networks and bundle"
			r.Discards = "the agent's processes, and every file written in its container"
		case bottle.RoleInternal, bottle.RoleEgress:
			r.Discards = "nothing of its own: what is attached to it is replaced with it"
		}
	}
}

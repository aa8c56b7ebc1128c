package docker

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// Addresses are where a bottle's parts are on its networks, as the engine
// has them: what a self-test probes from inside the agent.
type Addresses struct {
	BundleIP        string
	AgentIP         string // "" without a docker agent (smolvm)
	InternalSubnet  string
	InternalGateway string // the gateway's address; the host does not hold it
	EgressSubnet    string
	EgressGateway   string // the host's address on the egress network
	// BundleImage is the image the bundle container was made of, as the
	// engine lists it.
	BundleImage string
}

// Addresses reads the bottle's networks and bundle from the engine.
func (p *Provider) Addresses(ctx context.Context, bottleName string) (Addresses, error) {
	var a Addresses
	nets, err := p.eng.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+bottleName))})
	if err != nil {
		return a, fmt.Errorf("list the networks of bottle %s: %w", bottleName, err)
	}
	for _, n := range nets {
		if n.Labels[bottle.LabelHash] == "" || len(n.IPAM.Config) == 0 {
			continue
		}
		c := n.IPAM.Config[0]
		switch n.Name {
		case bottle.ResourceName(bottleName, bottle.RoleInternal):
			a.InternalSubnet, a.InternalGateway = c.Subnet, c.Gateway
		case bottle.ResourceName(bottleName, bottle.RoleEgress):
			a.EgressSubnet, a.EgressGateway = c.Subnet, c.Gateway
		}
	}
	if a.InternalSubnet == "" {
		return a, fmt.Errorf("bottle %s has no internal network: apply its spec first", bottleName)
	}
	// One list for both containers; it holds their addresses.
	cs, err := p.eng.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+bottleName))})
	if err != nil {
		return a, fmt.Errorf("list the containers of bottle %s: %w", bottleName, err)
	}
	internal := bottle.ResourceName(bottleName, bottle.RoleInternal)
	ip := func(role string) string {
		if c, ok := pickOurs(cs, bottleName, role); ok && c.NetworkSettings != nil {
			if ep := c.NetworkSettings.Networks[internal]; ep != nil {
				return ep.IPAddress
			}
		}
		return ""
	}
	a.BundleIP, a.AgentIP = ip(bottle.RoleBundle), ip(bottle.RoleAgent)
	if c, ok := pickOurs(cs, bottleName, bottle.RoleBundle); ok {
		a.BundleImage = c.Image
	}
	if a.BundleIP == "" {
		return a, fmt.Errorf("the bundle of bottle %s has no address on %s: run bottle-apply to replace it", bottleName, bottle.ResourceName(bottleName, bottle.RoleInternal))
	}
	return a, nil
}

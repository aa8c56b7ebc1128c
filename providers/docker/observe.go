package docker

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// Observe implements reconcile.Provider with one list call per kind, run in
// parallel, and one of the images (see indexImages). Networks are listed whole: foreign ones are returned unmanaged so
// that automatic subnets avoid them and name collisions are caught. Containers
// are listed by the bottles' name prefix, and so are volumes: every volume
// of a bottle is named bottle-NAME-VOLUME, and the name (a substring filter
// to the engine) catches a foreign volume of that name too, which a label
// filter would miss. With scope.All the containers and volumes are listed
// by bottle-apply's name label instead (whole, when there are bottles to
// claim namesakes for, and kept by label or name here): still one list
// each.
func (p *Provider) Observe(ctx context.Context, scope reconcile.Scope) ([]reconcile.Resource, error) {
	if len(scope.Bottles) == 0 && !scope.All {
		return nil, nil
	}
	if err := p.negotiate(ctx); err != nil {
		return nil, transient(err)
	}
	var (
		nets []network.Summary
		ctrs []container.Summary
		vols []*volume.Volume
		idx  imageIndex
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		nets, err = p.eng.NetworkList(gctx, network.ListOptions{})
		if err != nil {
			return fmt.Errorf("list networks: %w", err)
		}
		return nil
	})
	ctrFilter, volFilter := listFilters(scope)
	g.Go(func() error {
		var err error
		ctrs, err = p.eng.ContainerList(gctx, container.ListOptions{All: true, Filters: ctrFilter})
		if err != nil {
			return fmt.Errorf("list containers: %w", err)
		}
		ctrs = slices.DeleteFunc(ctrs, func(c container.Summary) bool {
			return len(c.Names) == 0 || !inScope(strings.TrimPrefix(c.Names[0], "/"), c.Labels, scope)
		})
		return nil
	})
	g.Go(func() error {
		// Every tagged image, in one call: what each tag names now, for
		// the agents and bundles of any bottle, and the built-in bundle
		// images of older builds. Untagged ones say nothing of either.
		imgs, err := p.eng.ImageList(gctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("dangling", "false"))})
		if err != nil {
			return fmt.Errorf("list images: %w", err)
		}
		idx = indexImages(imgs, repoOf(p.opts.BundleImage))
		return nil
	})
	g.Go(func() error {
		resp, err := p.eng.VolumeList(gctx, volume.ListOptions{Filters: volFilter})
		if err != nil {
			return fmt.Errorf("list volumes: %w", err)
		}
		vols = resp.Volumes
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, transient(err)
	}
	p.setListed(idx)
	rs := observed(nets, ctrs)
	vrs := observedVolumes(vols, scope)
	dependOnVolumes(rs, ctrs, vrs)
	rs = append(rs, vrs...)
	claimNamesakes(rs, scope)
	p.markUnstartable(rs)
	return rs, nil
}

// listFilters are the engine filters of the container and volume lists.
// Without scope.All: the bottles' name prefixes. With it and no bottles:
// bottle-apply's name label. With both: none, since an unmanaged namesake
// lacks the label and the engine ANDs a label with a name filter; inScope
// then keeps what is of the scope. It is pure.
func listFilters(scope reconcile.Scope) (ctrs, vols filters.Args) {
	ctrs, vols = filters.NewArgs(), filters.NewArgs()
	switch {
	case scope.All && len(scope.Bottles) == 0:
		ctrs.Add("label", bottle.LabelName)
		vols.Add("label", bottle.LabelName)
	case !scope.All:
		for _, b := range scope.Bottles {
			ctrs.Add("name", "^/"+regexp.QuoteMeta(bottle.ResourceName(b, "")))
			vols.Add("name", bottle.VolumeName(b, ""))
		}
	}
	return ctrs, vols
}

// inScope says whether a listed container or volume is of the scope: named
// with the prefix of one of its bottles (containers and volumes share it),
// or, under scope.All, carrying bottle-apply's name label. It is pure.
func inScope(name string, labels map[string]string, scope reconcile.Scope) bool {
	if scope.All && labels[bottle.LabelName] != "" {
		return true
	}
	return slices.ContainsFunc(scope.Bottles, func(b string) bool { return strings.HasPrefix(name, bottle.ResourceName(b, "")) })
}

// markUnstartable reports failed the containers whose start the engine
// refused for good in this run, saying why.
func (p *Provider) markUnstartable(rs []reconcile.Resource) {
	for i := range rs {
		r := &rs[i]
		if r.Kind != KindContainer || r.State == reconcile.StateRunning {
			continue
		}
		if msg, ok := p.unstartable.Load(r.EngineID); ok {
			r.State = reconcile.StateFailed
			r.Failure = fmt.Sprintf("the engine cannot start it (%s)", msg)
		}
	}
}

// claimNamesakes marks unmanaged resources that bear the name of a bottle's
// resource with that bottle, so that the plan can say it leaves them alone.
func claimNamesakes(rs []reconcile.Resource, scope reconcile.Scope) {
	names := map[string]string{}
	for _, b := range scope.Bottles {
		for _, role := range []string{bottle.RoleInternal, bottle.RoleEgress, bottle.RoleBundle, bottle.RoleAgent} {
			names[bottle.ResourceName(b, role)] = b
		}
	}
	for i := range rs {
		if r := &rs[i]; !r.Managed && r.Bottle == "" {
			r.Bottle = names[r.Name]
		}
	}
}

// observed turns engine objects into resources. It is pure.
func observed(nets []network.Summary, ctrs []container.Summary) []reconcile.Resource {
	out := make([]reconcile.Resource, 0, len(nets)+len(ctrs))
	netIDs := map[string]string{}    // engine network ID -> our resource ID
	netByName := map[string]string{} // engine network name -> its engine ID
	for i := range nets {
		n := &nets[i]
		r := fromLabels(KindNetwork, n.Name, n.ID, n.Labels)
		r.State, r.Created = reconcile.StatePresent, n.Created
		for _, c := range n.IPAM.Config {
			if strings.Contains(c.Subnet, ".") {
				r.Summary = map[string]string{"subnet": c.Subnet}
				break
			}
		}
		if r.Managed {
			netIDs[n.ID] = r.ID()
			netByName[n.Name] = n.ID
		}
		out = append(out, r)
	}
	for i := range ctrs {
		c := &ctrs[i]
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		r := fromLabels(KindContainer, name, c.ID, c.Labels)
		r.State, r.Status = containerState(c.State), c.Status
		if c.Created != 0 {
			r.Created = time.Unix(c.Created, 0)
		}
		if c.NetworkSettings != nil {
			r.Attached = map[string]string{}
			for name, ep := range c.NetworkSettings.Networks {
				netID := ep.NetworkID
				if netID == "" {
					// A container created but never started, as an engine
					// killed at the wrong moment leaves it, names its
					// networks without their IDs.
					netID = netByName[name]
				}
				if id, ok := netIDs[netID]; ok {
					r.Attached[id] = netID
					r.DependsOn = append(r.DependsOn, id)
				} else {
					r.Attached["network "+name] = ep.NetworkID // not ours
				}
			}
		}
		slices.Sort(r.DependsOn)
		r.Summary = map[string]string{"image": c.Image}
		if ip := internalIP(c, r.Bottle); ip != "" {
			r.Summary["ip"] = ip
		}
		r.ImageID = c.ImageID
		out = append(out, r)
	}
	return out
}

// internalIP is the container's address on its bottle's internal network:
// the engine's, or while it is stopped the one it was made with. It is
// pure.
func internalIP(c *container.Summary, bottleName string) string {
	if c.NetworkSettings == nil || bottleName == "" {
		return ""
	}
	ep := c.NetworkSettings.Networks[bottle.ResourceName(bottleName, bottle.RoleInternal)]
	switch {
	case ep == nil:
		return ""
	case ep.IPAddress != "":
		return ep.IPAddress
	case ep.IPAMConfig != nil:
		return ep.IPAMConfig.IPv4Address
	}
	return ""
}

// observedVolumes turns the listed volumes into resources. It is pure.
// The engine's filter is a substring match: only the volumes whose name
// starts with a bottle's prefix are kept, and under scope.All those that
// carry bottle-apply's name label.
func observedVolumes(vols []*volume.Volume, scope reconcile.Scope) []reconcile.Resource {
	var out []reconcile.Resource
	for _, v := range vols {
		if v == nil || !inScope(v.Name, v.Labels, scope) {
			continue
		}
		r := fromLabels(KindVolume, v.Name, v.Name, v.Labels)
		r.State, r.Persistent = reconcile.StatePresent, true
		r.Created, _ = time.Parse(time.RFC3339, v.CreatedAt) // zero when the engine gives none
		// Ours only under the name it was made with: a copy that carries
		// the labels (bottle-x-work-backup) holds data too, and would
		// otherwise be a duplicate to delete.
		if r.Managed && v.Name != bottle.VolumeName(r.Bottle, r.Role) {
			r.Managed = false
		}
		if !r.Managed && r.Bottle == "" {
			// A foreign volume named like the bottle's: the plan says
			// it leaves it alone. The longest name is the bottle's
			// (bottle-a-b-x is of bottle a-b, when both are in scope).
			for _, b := range scope.Bottles {
				if strings.HasPrefix(v.Name, bottle.VolumeName(b, "")) && len(b) > len(r.Bottle) {
					r.Bottle = b
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// dependOnVolumes makes each observed container depend on the managed
// volumes it mounts, so that destroy --volumes removes the agent before
// its volumes. rs holds the containers in the order of ctrs, after the
// networks. It is pure.
func dependOnVolumes(rs []reconcile.Resource, ctrs []container.Summary, vols []reconcile.Resource) {
	ids := map[string]string{} // volume name -> resource ID
	for i := range vols {
		if vols[i].Managed {
			ids[vols[i].Name] = vols[i].ID()
		}
	}
	if len(ids) == 0 {
		return
	}
	first := len(rs) - len(ctrs)
	for i := range ctrs {
		r := &rs[first+i]
		for _, m := range ctrs[i].Mounts {
			if id, ok := ids[m.Name]; ok && m.Type == mount.TypeVolume && !slices.Contains(r.DependsOn, id) {
				r.DependsOn = append(r.DependsOn, id)
			}
		}
		slices.Sort(r.DependsOn)
	}
}

func fromLabels(kind, name, id string, labels map[string]string) reconcile.Resource {
	r := reconcile.Resource{
		Provider: ProviderName, Kind: kind, Name: name, EngineID: id,
		Bottle: labels[bottle.LabelName], Role: labels[bottle.LabelRole], Hash: labels[bottle.LabelHash],
		Inputs: reconcile.DecodeInputs(labels[bottle.LabelInputs]), Set: labels[bottle.LabelSet],
	}
	r.Managed = bottle.Owned(r.Bottle, r.Role, r.Hash)
	return r
}

func containerState(s string) reconcile.State {
	switch s {
	case "running", "restarting":
		return reconcile.StateRunning
	case "created":
		return reconcile.StateCreated
	case "exited":
		return reconcile.StateStopped
	case "dead":
		return reconcile.StateFailed
	}
	// paused (someone is looking at it) and removing (going by itself):
	// left alone.
	return reconcile.StateUnknown
}

// negotiator is how a client settles the engine's API version; the real
// one has it, the fake does not need it.
type negotiator interface {
	Ping(ctx context.Context) (types.Ping, error)
	NegotiateAPIVersionPing(types.Ping)
}

var _ negotiator = (*client.Client)(nil)

// negotiate settles the API version before calls go in parallel. The
// client negotiates on its first call, and some calls read the version
// before they make it, unlocked (ContainerList, for its filters): two
// first calls at once race. One ping does it, the ping the first call
// would have made.
func (p *Provider) negotiate(ctx context.Context) error {
	n, ok := p.eng.(negotiator)
	if !ok || p.negotiated.Load() {
		return nil
	}
	p.negotiateMu.Lock()
	defer p.negotiateMu.Unlock()
	if p.negotiated.Load() {
		return nil
	}
	zerolog.Ctx(ctx).Debug().Msg("Ping")
	ping, err := n.Ping(ctx)
	if err != nil {
		return fmt.Errorf("ask the engine its API version: %w", err)
	}
	n.NegotiateAPIVersionPing(ping)
	p.negotiated.Store(true)
	return nil
}

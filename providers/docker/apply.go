package docker

import (
	"context"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Apply implements reconcile.Provider: it carries out one Create, Start or
// Delete and decides nothing.
func (p *Provider) Apply(ctx context.Context, s reconcile.Step) error {
	return transient(p.apply(ctx, s))
}

func (p *Provider) apply(ctx context.Context, s reconcile.Step) error {
	r := &s.Resource
	if s.Action == reconcile.Delete {
		gone := r
		if s.Observed != nil {
			gone = s.Observed
		}
		// The first half of a Replace: make sure the replacement's image is
		// here before the old container goes.
		if cfg, ok := r.Config.(containerConfig); ok {
			if err := p.ensureImage(ctx, cfg.Image, cfg.Builtin); err != nil {
				return fmt.Errorf("%w; %s was left as it is", err, gone.Name)
			}
		}
		switch gone.Kind {
		case KindNetwork:
			return p.removeNetwork(ctx, gone)
		case KindVolume:
			return p.removeVolume(ctx, gone)
		}
		return p.removeContainer(ctx, gone)
	}
	switch {
	case s.Action == reconcile.Create && r.Kind == KindNetwork:
		cfg, ok := r.Config.(networkConfig)
		if !ok {
			return fmt.Errorf("internal: %s has no network config", r.ID())
		}
		// A new bottle's bundle comes next: guard the host meanwhile.
		p.startGuard(ctx)
		return p.createNetwork(ctx, cfg)
	case s.Action == reconcile.Create && r.Kind == KindVolume:
		cfg, ok := r.Config.(volumeConfig)
		if !ok {
			return fmt.Errorf("internal: %s has no volume config", r.ID())
		}
		return p.createVolume(ctx, r, cfg)
	case s.Action == reconcile.Create && r.Kind == KindContainer:
		cfg, ok := r.Config.(containerConfig)
		if !ok {
			return fmt.Errorf("internal: %s has no container config", r.ID())
		}
		if err := p.guardBundle(ctx, r); err != nil {
			return err
		}
		return p.createContainer(ctx, cfg)
	case s.Action == reconcile.Start && r.Kind == KindContainer && s.Observed != nil:
		if err := p.guardBundle(ctx, r); err != nil {
			return err
		}
		if cfg, ok := r.Config.(containerConfig); ok && s.Observed.State == reconcile.StateCreated {
			// Never started: a run cut short between its create and its
			// start may not have written its files.
			if err := p.prepare(ctx, s.Observed.EngineID, cfg); err != nil {
				return err
			}
		}
		return p.startContainer(ctx, s.Observed.EngineID, s.Observed.Name)
	}
	return fmt.Errorf("internal: the docker provider cannot %s a %s", s.Action, r.Kind)
}

// guardBundle guards the engine's host before a bundle starts.
func (p *Provider) guardBundle(ctx context.Context, r *reconcile.Resource) error {
	if r.Role != bottle.RoleBundle {
		return nil
	}
	if err := p.guarded(ctx); err != nil {
		return fmt.Errorf("%w; the bundle %s was not started: without the rule, an address of the host that it does not know (a bridge made later) would be open to it", err, r.Name)
	}
	return nil
}

func (p *Provider) createNetwork(ctx context.Context, cfg networkConfig) error {
	opts := network.CreateOptions{Driver: "bridge", Internal: cfg.Internal, Labels: cfg.Labels, Options: cfg.Options}
	if cfg.Subnet != "" {
		opts.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: cfg.Subnet, Gateway: cfg.Gateway}}}
	}
	// The client asks engines before API 1.44 to refuse duplicate names.
	zerolog.Ctx(ctx).Debug().Str("network", cfg.Name).Str("subnet", cfg.Subnet).Msg("NetworkCreate")
	_, err := p.eng.NetworkCreate(ctx, cfg.Name, opts)
	if err == nil {
		return nil
	}
	if cerrdefs.IsConflict(err) || cerrdefs.IsAlreadyExists(err) {
		// Made meanwhile, by a concurrent run or by hand: the next round
		// sees which.
		return fmt.Errorf("create network %s: %w (%w)", cfg.Name, err, reconcile.ErrRetry)
	}
	if strings.Contains(err.Error(), "overlap") {
		// Another network took the range since we observed.
		return fmt.Errorf("create network %s with subnet %s: %w; if another network uses this range, choose another spec.network.subnet (%w)",
			cfg.Name, cfg.Subnet, err, reconcile.ErrRetry)
	}
	return fmt.Errorf("create network %s: %w", cfg.Name, err)
}

func (p *Provider) createContainer(ctx context.Context, cfg containerConfig) error {
	if err := p.ensureImage(ctx, cfg.Image, cfg.Builtin); err != nil {
		return err
	}
	if err := checkBinds(cfg); err != nil {
		return err
	}
	config, host, netcfg := containerSpec(cfg)
	log := zerolog.Ctx(ctx)
	log.Debug().Str("container", cfg.Name).Str("image", cfg.Image).Msg("ContainerCreate")
	created, err := p.eng.ContainerCreate(ctx, config, host, netcfg, nil, cfg.Name)
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return fmt.Errorf("create container %s: %w (%w)", cfg.Name, err, reconcile.ErrRetry)
		}
		if cfg.Builtin && cerrdefs.IsNotFound(err) {
			// Made or found a moment ago: another bottle-apply build's
			// cleanup of old bundle images took it; the next round makes
			// it again.
			return fmt.Errorf("create container %s: %w; another build's cleanup may have removed the built-in bundle image: it is made again (%w)", cfg.Name, err, reconcile.ErrRetry)
		}
		if strings.Contains(err.Error(), "bind source path does not exist") {
			return fmt.Errorf("create container %s: %w; a host directory of spec.agent.volumes is gone: make it again, or take it out of the spec", cfg.Name, err)
		}
		return fmt.Errorf("create container %s: %w", cfg.Name, err)
	}
	for i, ep := range cfg.Networks {
		if i == 0 {
			continue // the primary network is in the create call
		}
		log.Debug().Str("container", cfg.Name).Str("network", ep.Network).Msg("NetworkConnect")
		if err := p.eng.NetworkConnect(ctx, ep.Network, created.ID, endpointSettings(ep)); err != nil {
			// The next round sees it unattached and replaces it.
			return fmt.Errorf("connect container %s to network %s: %w (%w)", cfg.Name, ep.Network, err, reconcile.ErrRetry)
		}
	}
	if err := p.prepare(ctx, created.ID, cfg); err != nil {
		// Never started without its files: the next round sees it
		// created, writes them and starts it.
		return err
	}
	return p.startContainer(ctx, created.ID, cfg.Name)
}

func (p *Provider) startContainer(ctx context.Context, id, name string) error {
	zerolog.Ctx(ctx).Debug().Str("container", name).Msg("ContainerStart")
	err := p.eng.ContainerStart(ctx, id, container.StartOptions{})
	if err == nil {
		return nil
	}
	if unstartable(err) {
		// Retrying the start meets the same error for ever: observe again,
		// see the container failed, and replace it.
		p.unstartable.Store(id, err.Error())
		return fmt.Errorf("start container %s: %w; the engine cannot start it, so it is replaced (%w)", name, err, reconcile.ErrRetry)
	}
	return fmt.Errorf("start container %s: %w; see `docker logs %s`", name, err, name)
}

// unstartable reports whether a start failed because the engine's runtime
// already has a task under the container's ID: the shim of an earlier
// start outlived an engine restart (dockerd was killed between creating
// the task and recording the container as running). No start of that
// container can succeed again; a new container can.
func unstartable(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "task ") && strings.Contains(msg, "already exists")
}

func (p *Provider) removeContainer(ctx context.Context, r *reconcile.Resource) error {
	if !r.Managed {
		return fmt.Errorf("internal: refusing to remove container %s: %w", r.Name, reconcile.ErrNotManaged)
	}
	zerolog.Ctx(ctx).Debug().Str("container", r.Name).Msg("ContainerRemove")
	err := p.eng.ContainerRemove(ctx, r.EngineID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && strings.Contains(err.Error(), "already in progress") {
		// Left removing by a run that was killed: gone soon.
		return fmt.Errorf("remove container %s: %w (%w)", r.Name, err, reconcile.ErrRetry)
	}
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", r.Name, err)
	}
	p.unstartable.Delete(r.EngineID)
	return nil
}

func (p *Provider) removeNetwork(ctx context.Context, r *reconcile.Resource) error {
	if !r.Managed {
		return fmt.Errorf("internal: refusing to remove network %s: %w", r.Name, reconcile.ErrNotManaged)
	}
	zerolog.Ctx(ctx).Debug().Str("network", r.Name).Msg("NetworkRemove")
	err := p.eng.NetworkRemove(ctx, r.EngineID)
	if err != nil && !cerrdefs.IsNotFound(err) {
		if cerrdefs.IsConflict(err) || cerrdefs.IsPermissionDenied(err) {
			return fmt.Errorf("remove network %s: %w; containers that are not bottle-apply's may still be attached (docker network inspect %s)", r.Name, err, r.Name)
		}
		return fmt.Errorf("remove network %s: %w", r.Name, err)
	}
	return nil
}

// checkBinds makes sure each host directory is still the directory the
// spec's checks passed (spec.RecheckHostPath).
func checkBinds(cfg containerConfig) error {
	for _, m := range cfg.Mounts {
		if m.Type != mount.TypeBind {
			continue
		}
		if err := spec.RecheckHostPath(m.Source); err != nil {
			return fmt.Errorf("create container %s: %w", cfg.Name, err)
		}
	}
	return nil
}

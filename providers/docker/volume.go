package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/volume"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// createVolume creates a bottle's named volume. The engine's create is
// idempotent: it returns the volume of that name if there is one, whoever
// made it. A volume that is not this bottle's is refused and left alone.
func (p *Provider) createVolume(ctx context.Context, r *reconcile.Resource, cfg volumeConfig) error {
	zerolog.Ctx(ctx).Debug().Str("volume", cfg.Name).Msg("VolumeCreate")
	v, err := p.eng.VolumeCreate(ctx, volume.CreateOptions{Name: cfg.Name, Labels: cfg.Labels})
	if err != nil {
		return fmt.Errorf("create volume %s: %w", cfg.Name, err)
	}
	if err := volumeIsOurs(v, r.Bottle, r.Role); err != nil {
		return fmt.Errorf("create volume %s: %w", cfg.Name, err)
	}
	return nil
}

// volumeIsOurs checks that a volume the engine returned is the bottle's
// volume of that role.
func volumeIsOurs(v volume.Volume, bottleName, role string) error {
	owner, vrole := v.Labels[bottle.LabelName], v.Labels[bottle.LabelRole]
	switch {
	case !bottle.Owned(owner, vrole, v.Labels[bottle.LabelHash]):
		return fmt.Errorf("volume %s exists and is not bottle-apply's (%w); it was left alone: remove or rename it, or rename the volume in spec.agent.volumes",
			v.Name, reconcile.ErrNotManaged)
	case owner != bottleName || vrole != role:
		return fmt.Errorf("volume %s exists and belongs to bottle %s (volume %s); it was left alone: remove or rename it, or rename the volume in spec.agent.volumes",
			v.Name, owner, vrole)
	}
	return nil
}

// removeVolume removes a bottle's named volume, only reached when the
// user asked for it (destroy --volumes).
func (p *Provider) removeVolume(ctx context.Context, r *reconcile.Resource) error {
	if !r.Managed {
		return fmt.Errorf("internal: refusing to remove volume %s: %w", r.Name, reconcile.ErrNotManaged)
	}
	zerolog.Ctx(ctx).Debug().Str("volume", r.Name).Msg("VolumeRemove")
	err := p.eng.VolumeRemove(ctx, r.Name, false)
	switch {
	case err == nil || cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("remove volume %s: %w; a container that is not the bottle's agent uses it (docker ps -a --filter volume=%s): remove that container first",
			r.Name, err, r.Name)
	}
	return fmt.Errorf("remove volume %s: %w", r.Name, err)
}

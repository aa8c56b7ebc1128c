package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/rs/zerolog"
)

// BundleImageGrace is how old a built-in bundle image of another build
// must be before PruneBundleImages removes it: a run of another build on
// the same engine (another checkout, a CI job) may have just made its
// image and be about to create its bundle from it, which takes seconds.
// A build from before this cleanup does not make the image again when it
// is gone by then (this one does: createContainer retries).
const BundleImageGrace = 10 * time.Minute

// PruneBundleImages removes the built-in bundle images of other
// bottle-apply builds (one a build) that no container uses and that were
// made more than BundleImageGrace ago, logging each. It works from the
// image list of the last Observe: an apply calls it after its last round,
// whose observation is of what the apply left. It never removes the
// current build's image, an image of another repository, or one without
// bottle-apply's label; it costs no call when there is nothing to remove,
// and then one container list and a remove an image.
func (p *Provider) PruneBundleImages(ctx context.Context, now time.Time) error {
	idx := p.lastListed()
	if idx == nil || p.opts.BundleImage == "" {
		return nil
	}
	current := idx.id(p.opts.BundleImage)
	curKey, _ := normalRef(p.opts.BundleImage)
	var old []bundleImage
	for _, b := range idx.bundles {
		if key, _ := normalRef(b.Ref); key == curKey || b.ID == current || now.Sub(b.Created) < BundleImageGrace {
			continue
		}
		old = append(old, b)
	}
	if len(old) == 0 {
		return nil
	}
	log := zerolog.Ctx(ctx)
	// Any container, of any bottle or none, running or not, keeps its
	// image: one list for all of them.
	f := filters.NewArgs()
	for _, b := range old {
		f.Add("ancestor", b.ID)
	}
	ctrs, err := p.eng.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("list the containers of old built-in bundle images: %w", err)
	}
	inUse := map[string]bool{}
	for _, c := range ctrs {
		inUse[c.ImageID] = true
	}
	var errs []error
	for _, b := range old {
		if inUse[b.ID] {
			log.Debug().Str("image", b.Ref).Msg("keeping an old built-in bundle image: a container uses it")
			continue
		}
		// By its tag and without force: another tag of the image stays,
		// and the engine refuses if a container took it meanwhile.
		_, err := p.eng.ImageRemove(ctx, b.Ref, image.RemoveOptions{PruneChildren: true})
		switch {
		case err == nil:
			log.Info().Str("image", b.Ref).Str("id", b.ID).Msg("removed an old built-in bundle image that no container uses")
		case cerrdefs.IsConflict(err), cerrdefs.IsNotFound(err):
			log.Debug().Err(err).Str("image", b.Ref).Msg("keeping an old built-in bundle image")
		default:
			errs = append(errs, fmt.Errorf("remove old built-in bundle image %s: %w", b.Ref, err))
		}
	}
	return errors.Join(errs...)
}

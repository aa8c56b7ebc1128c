package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// ensureImage makes sure the engine has ref: the built-in bundle image is
// made from the bundle binary, any other image is pulled. Concurrent calls
// for one ref share the work.
func (p *Provider) ensureImage(ctx context.Context, ref string, builtin bool) error {
	_, err, _ := p.images.Do(ref, func() (any, error) {
		if _, err := p.eng.ImageInspect(ctx, ref); err == nil {
			return nil, nil
		} else if !cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("inspect image %s: %w", ref, err)
		}
		if builtin {
			err := p.importBundleImage(ctx, ref)
			if err != nil && strings.Contains(err.Error(), "already exists") {
				// Another run imported the same image at the same moment:
				// Docker 29's containerd store then refuses this import, and
				// may not show the other's yet. Use it, or observe again.
				if _, ierr := p.eng.ImageInspect(ctx, ref); ierr == nil {
					return nil, nil
				}
				return nil, fmt.Errorf("%w (%w)", err, reconcile.ErrRetry)
			}
			return nil, err
		}
		return nil, p.pull(ctx, ref)
	})
	return err
}

// importBundleImage makes the built-in bundle image ref of the bottle-bundle
// build for the engine's platform.
func (p *Provider) importBundleImage(ctx context.Context, ref string) error {
	bin, err := p.bundleBinary(ctx)
	if errors.Is(err, ErrPlatform) {
		return fmt.Errorf("make the built-in bundle image %s: %w; set spec.bundle.image to a bundle image of your own", ref, err)
	} else if err != nil {
		return fmt.Errorf("make the built-in bundle image %s: %w", ref, err)
	}
	zerolog.Ctx(ctx).Info().Str("image", ref).Str("from", bin).Msg("building the built-in bundle image")
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(bundleimage.WriteRootfs(pw, bin)) }()
	entry, _ := json.Marshal(bundleimage.Entrypoint)
	changes := []string{"ENTRYPOINT " + string(entry)}
	labels := bundleimage.Labels(p.opts.Version)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		changes = append(changes, "LABEL "+k+"="+labels[k])
	}
	rc, err := p.eng.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("import bundle image %s: %w", ref, err)
	}
	defer rc.Close()
	if err := readMessages(ctx, rc, ref, "import"); err != nil {
		return fmt.Errorf("import bundle image %s: %w", ref, err)
	}
	return nil
}

func (p *Provider) pull(ctx context.Context, ref string) error {
	zerolog.Ctx(ctx).Info().Str("image", ref).Msg("pulling image")
	rc, err := p.eng.ImagePull(ctx, ref, image.PullOptions{})
	if err == nil {
		defer rc.Close()
		err = readMessages(ctx, rc, ref, "pull")
	}
	if err != nil {
		return fmt.Errorf("image %s is not present locally and pulling it failed: %w; build or load it into the engine (docker build -t %s . / docker load), or check that its registry is reachable", ref, err, ref)
	}
	return nil
}

// readMessages drains an engine progress stream, logging progress at most
// every two seconds, and returns the first error it reports.
func readMessages(ctx context.Context, r io.Reader, ref, what string) error {
	log := zerolog.Ctx(ctx)
	dec := json.NewDecoder(r)
	last := time.Time{}
	for {
		var m struct {
			Status   string `json:"status"`
			Progress string `json:"progress"`
			ID       string `json:"id"`
			Error    string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		if time.Since(last) > 2*time.Second && m.Status != "" {
			last = time.Now()
			ev := log.Info().Str("image", ref)
			if m.ID != "" {
				ev = ev.Str("layer", m.ID)
			}
			if m.Progress != "" {
				ev = ev.Str("progress", m.Progress)
			}
			ev.Msg(what + ": " + m.Status)
		}
	}
}

package smolvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"

	"github.com/rs/zerolog"
)

// ImageSource gives smolvm images from the local Docker engine, which
// smolvm cannot read. The docker provider implements it.
type ImageSource interface {
	// ImageID returns the content ID of ref in the local engine: "" and
	// nil when the engine does not have it.
	ImageID(ctx context.Context, ref string) (id string, err error)
	// ListedImageID returns, without a call, the content ID ref had in
	// the engine's image list of this plan's observation: "" when the
	// engine did not have it. A machine made of other content is
	// replaced.
	ListedImageID(ref string) string
	// Save writes a docker-save archive of ref to path, of the platform
	// ("linux/arm64") that will run it.
	Save(ctx context.Context, ref, platform, path string) error
	// Serve serves ref from an in-process loopback registry until stop is
	// called, and returns the reference to pull it by.
	Serve(ctx context.Context, ref, platform string) (pullRef string, stop func(), err error)
}

// Image routes: how an agent image reaches smolvm. The provider picks one
// per create, logs it, and the plan shows the candidates.
const (
	// routeArchive (smolvm 1.9+, local image): docker save to
	// CacheDir/images/KEY.tar, then create --image ARCHIVE. No registry is
	// involved, at create or at start.
	routeArchive = "docker-save"
	// routeServe (before 1.9, local image): serve the image from a loopback
	// registry while pack create pulls it into CacheDir/packs/KEY/agent,
	// then create --from agent.smolmachine.
	routeServe = "loopback-pack"
	// routePull (the engine does not have the image): pack create pulls
	// the reference from its registry, then create --from.
	routePull = "registry-pack"
)

// machinePlatform is the platform of the images a machine runs: smolvm runs
// Linux microVMs of the host's architecture.
const machinePlatform = "linux/" + runtime.GOARCH

// plannedRoute is what the plan shows before the local engine is asked:
// the route for a local image, else the registry one.
func (p *Provider) plannedRoute(v Version) string {
	switch {
	case p.opts.Images == nil:
		return routePull
	case v.AtLeast(v1Workload):
		return routeArchive + "|" + routePull
	}
	return routeServe + "|" + routePull
}

// imageSrc is how create gets the image: exactly one of from and image.
type imageSrc struct {
	route string
	from  string // --from: a .smolmachine sidecar
	image string // --image: an archive
	// id is the content ID the sidecar or archive was made of: "" when
	// it came from a registry.
	id string
}

// ensureImage makes the agent image available to `machine create`, reusing
// what the cache holds. Cache keys are the image's content ID when the
// local engine has it (a rebuilt image gets a new archive or pack), else
// the reference. Concurrent creates of one key share the work.
func (p *Provider) ensureImage(ctx context.Context, v Version, ref string) (imageSrc, error) {
	if p.opts.CacheDir == "" {
		return imageSrc{}, errors.New("no cache directory for smolvm images: set $XDG_CACHE_HOME or $HOME")
	}
	id := ""
	if p.opts.Images != nil {
		var err error
		if id, err = p.opts.Images.ImageID(ctx, ref); err != nil {
			return imageSrc{}, fmt.Errorf("look up image %s in the local Docker engine: %w", ref, err)
		}
	}
	log := zerolog.Ctx(ctx).Info().Str("provider", ProviderName).Str("image", ref)
	switch {
	case id != "" && v.AtLeast(v1Workload):
		path := filepath.Join(p.opts.CacheDir, "images", contentKey(id)+".tar")
		log.Str("route", routeArchive).Str("archive", path).Msg("the local Docker engine has the image: giving smolvm a docker-save archive")
		_, err, _ := p.images.Do("save:"+path, func() (any, error) { return nil, p.save(ctx, ref, path) })
		return imageSrc{route: routeArchive, image: path, id: id}, err
	case id != "":
		dir := filepath.Join(p.opts.CacheDir, "packs", contentKey(id))
		log.Str("route", routeServe).Str("pack", dir).Msg("the local Docker engine has the image: packing it from a loopback registry")
		_, err, _ := p.images.Do("pack:"+dir, func() (any, error) { return nil, p.pack(ctx, dir, ref, true) })
		return imageSrc{route: routeServe, from: sidecar(dir), id: id}, err
	default:
		dir := filepath.Join(p.opts.CacheDir, "packs", refKey(ref))
		log.Str("route", routePull).Str("pack", dir).Msg("packing the image from its registry")
		_, err, _ := p.images.Do("pack:"+dir, func() (any, error) { return nil, p.pack(ctx, dir, ref, false) })
		return imageSrc{route: routePull, from: sidecar(dir)}, err
	}
}

func sidecar(packDir string) string { return filepath.Join(packDir, "agent.smolmachine") }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// save writes a docker-save archive of ref to path, unless it is there: a
// temporary file renamed at the end, so that path is always whole.
func (p *Provider) save(ctx context.Context, ref, path string) error {
	if exists(path) {
		zerolog.Ctx(ctx).Debug().Str("archive", path).Msg("reusing the image archive")
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save image %s: %w", ref, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("save image %s: %w", ref, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := p.opts.Images.Save(ctx, ref, machinePlatform, tmp.Name()); err != nil {
		return fmt.Errorf("save image %s from the local Docker engine: %w", ref, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save image %s: %w", ref, err)
	}
	return nil
}

// pack makes dir/agent and dir/agent.smolmachine with `pack create`,
// unless the sidecar is there. It packs into a staging directory next to
// dir (named with the process ID, so that concurrent runs do not mix their
// files) and renames it at the end: a pack directory is always whole. With
// local set, the image is served from a loopback registry for the pack.
func (p *Provider) pack(ctx context.Context, dir, ref string, local bool) error {
	log := zerolog.Ctx(ctx)
	if exists(sidecar(dir)) {
		log.Debug().Str("pack", dir).Msg("reusing the pack")
		return nil
	}
	staging := stagingDir(dir)
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("pack image %s: %w", ref, err)
	}
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return fmt.Errorf("pack image %s: %w", ref, err)
	}
	defer os.RemoveAll(staging)

	pullRef := ref
	stop := func() {}
	if local {
		var err error
		if pullRef, stop, err = p.opts.Images.Serve(ctx, ref, machinePlatform); err != nil {
			return fmt.Errorf("serve image %s to smolvm: %w", ref, err)
		}
	}
	err := p.cli.packCreate(ctx, pullRef, filepath.Join(staging, "agent"))
	stop()
	if err != nil {
		return packError(ref, pullRef, local, err)
	}
	if !exists(sidecar(staging)) {
		return fmt.Errorf("pack image %s: smolvm pack create wrote no %s", ref, sidecar(staging))
	}
	if err := os.Rename(staging, dir); err != nil {
		if exists(sidecar(dir)) {
			return nil // a concurrent run finished first
		}
		// An incomplete pack directory from an interrupted older run.
		if rerr := os.RemoveAll(dir); rerr != nil || os.Rename(staging, dir) != nil {
			return fmt.Errorf("pack image %s: %w", ref, err)
		}
	}
	return nil
}

func stagingDir(dir string) string {
	return filepath.Join(filepath.Dir(dir), fmt.Sprintf(".%s.%d", filepath.Base(dir), os.Getpid()))
}

func packError(ref, pullRef string, local bool, err error) error {
	if hint, ok := hypervisorProblem(err); ok {
		return fmt.Errorf("pack image %s: smolvm cannot run a VM on this host (pack boots one to pull the image): %w; to fix it, %s", ref, err, hint)
	}
	if errors.Is(err, ErrNotInstalled) {
		return fmt.Errorf("pack image %s: %w", ref, err)
	}
	if local {
		return fmt.Errorf("pack image %s from the loopback registry (%s): %w; the VM that smolvm pack boots could not pull it from the host: "+
			"smolvm 1.9 or later takes a docker-save archive instead (no registry), or push the image to a registry the VM can reach", ref, pullRef, err)
	}
	return fmt.Errorf("pack image %s: %w; smolvm pulls the image from its registry: if it is a local image, docker pull or docker build it "+
		"so that the local Docker engine has it, or check the reference and that the registry is reachable", ref, err)
}

// contentKey names cache entries by image content (the engine's image ID).
func contentKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

var unsafeKey = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// refKey names cache entries by reference, when the content is not known:
// the reference made file-safe (for humans) and a hash of it (to be unique).
func refKey(ref string) string {
	s := unsafeKey.ReplaceAllString(ref, "_")
	if len(s) > 64 {
		s = s[:64]
	}
	sum := sha256.Sum256([]byte(ref))
	return s + "-" + hex.EncodeToString(sum[:])[:12]
}

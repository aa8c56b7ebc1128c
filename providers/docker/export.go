package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
)

var errNoGuestEngine = errors.New("internal: the engine client cannot exec, copy or export images")

// ImageID returns the content ID of a local image, or "" when the engine
// does not have it. With Save and Serve it lets the smolvm provider take
// images from the local engine, which smolvm itself cannot read.
func (p *Provider) ImageID(ctx context.Context, ref string) (string, error) {
	img, err := p.eng.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.ID, nil
}

// Save writes a docker-save archive of ref to path (atomically: a partial
// archive never has the final name), of the one platform ("linux/arm64")
// that will run it when the engine can say so (API 1.48): a multi-platform
// image on the containerd image store is otherwise saved with an index that
// names manifests whose blobs are not in the archive. Older engines, whose
// stores hold one platform of an image, save it whole.
func (p *Provider) Save(ctx context.Context, ref, platform, path string) error {
	g, err := p.guestEngine()
	if err != nil {
		return err
	}
	var opts []client.ImageSaveOption
	if platform != "" && versions.GreaterThanOrEqualTo(g.ClientVersion(), "1.48") {
		goos, arch, _ := strings.Cut(platform, "/")
		opts = append(opts, client.ImageSaveWithPlatforms(ocispec.Platform{OS: goos, Architecture: arch}))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".save-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	rc, err := g.ImageSave(ctx, []string{ref}, opts...)
	if err != nil {
		tmp.Close()
		return fmt.Errorf("export image %s from the engine: %w", ref, err)
	}
	_, err = io.Copy(tmp, rc)
	rc.Close()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export image %s to %s: %w", ref, path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// Serve exports ref (of platform, as Save) from the engine into a registry that listens on
// 127.0.0.1 for as long as stop is not called, and returns the reference
// to pull it by. smolvm's pack pulls registry references only.
func (p *Provider) Serve(ctx context.Context, ref, platform string) (pullRef string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "bottle-apply-serve-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	archive := filepath.Join(dir, "image.tar")
	if err := p.Save(ctx, ref, platform, archive); err != nil {
		cleanup()
		return "", nil, err
	}
	srcTag, err := name.NewTag(ref)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("image reference %s: %w", ref, err)
	}
	img, err := tarball.ImageFromPath(archive, &srcTag)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("read exported image %s: %w", ref, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("listen for the image registry: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		cleanup()
	}
	repo := strings.TrimPrefix(srcTag.Context().RepositoryStr(), "library/")
	pullRef = fmt.Sprintf("%s/%s:%s", ln.Addr().String(), repo, srcTag.TagStr())
	dst, err := name.NewTag(pullRef, name.Insecure)
	if err == nil {
		err = remote.Write(dst, img, remote.WithContext(ctx))
	}
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("serve image %s on loopback: %w", ref, err)
	}
	zerolog.Ctx(ctx).Info().Str("image", ref).Str("registry", ln.Addr().String()).Msg("serving the image to smolvm from a loopback registry")
	return pullRef, stop, nil
}

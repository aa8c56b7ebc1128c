package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// BundleRepo is the repository of the built-in bundle image. Its tag is
// derived from the bottle-bundle builds bottle-apply ships, so a new
// bottle-apply brings a new bundle image (and replaces bundles, but not
// agents).
const BundleRepo = "bottle-apply/bundle"

// BundleBinaryPath is where the built-in bundle image holds bottle-bundle,
// its entrypoint.
const BundleBinaryPath = "/bottle-bundle"

// BundleStatusCmd asks the built-in bundle whether its daemons listen.
var BundleStatusCmd = []string{BundleBinaryPath, "status"}

// BundleGuardCheckCmd asks the built-in bundle whether the host answers
// past its proxy (exit 3): whether the host guard's rule is missing.
var BundleGuardCheckCmd = []string{BundleBinaryPath, "guardcheck"}

// bundleEntrypoint runs the bundle program inside the built-in image.
var bundleEntrypoint = []string{BundleBinaryPath}

// bundleImageFormat names how the built-in image is made of a build (its
// path, its entrypoint): a new format is a new tag for the same builds.
const bundleImageFormat = "bottle-bundle/1"

// BundleImageRef returns the built-in bundle image's reference for the
// bottle-bundle builds bottle-apply ships (their paths): the Go build ID
// (or, without one, the content) of every build names the tag. The
// engine's architecture does not enter it, so that planning needs no
// docker info: the image of each engine holds that engine's build.
func BundleImageRef(builds []string) (string, error) {
	if len(builds) == 0 {
		return "", errors.New("internal: no bottle-bundle build to name the built-in bundle image after")
	}
	builds = slices.Clone(builds)
	slices.SortFunc(builds, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	h := sha256.New()
	fmt.Fprintln(h, bundleImageFormat)
	for _, b := range builds {
		id, err := buildID(b)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, filepath.Base(b), id)
	}
	return BundleRepo + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// buildID is the Go build ID of the executable path, or, without one, a
// digest of its content.
func buildID(path string) (string, error) {
	if id, err := goBuildID(path); err == nil && id != "" {
		return id, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("bundle binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("bundle binary %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// goBuildID reads the Go build ID note of an ELF executable.
func goBuildID(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return "", nil
	}
	data, err := sec.Data()
	if err != nil || len(data) < 16 {
		return "", err
	}
	nameSize := binary.LittleEndian.Uint32(data[0:4])
	descSize := binary.LittleEndian.Uint32(data[4:8])
	off := 12 + (int(nameSize)+3)&^3
	if off+int(descSize) > len(data) {
		return "", nil
	}
	return string(data[off : off+int(descSize)]), nil
}

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
	go func() { pw.CloseWithError(writeRootfs(pw, bin)) }()
	entry, _ := json.Marshal(bundleEntrypoint)
	rc, err := p.eng.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{
		Changes: []string{"ENTRYPOINT " + string(entry), "LABEL " + bottle.LabelVersion + "=" + p.opts.Version},
	})
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

// writeRootfs writes a root file system holding the bottle-bundle build bin
// and an empty /tmp.
func writeRootfs(w io.Writer, bin string) error {
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: mtime}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: bundleEntrypoint[0][1:], Mode: 0o755, Size: st.Size(), ModTime: mtime}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return err
	}
	return tw.Close()
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

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
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// BundleRepo is the repository of the built-in bundle image. Its tag is
// derived from the binary it is made of, so a new bottle-apply brings a new
// bundle image (and replaces bundles, but not agents).
const BundleRepo = "bottle-apply/bundle"

// BundleBinaryPath is where the built-in bundle image holds bottle-apply.
const BundleBinaryPath = "/bottle-apply"

// bundleEntrypoint runs the bundle program inside the built-in image.
var bundleEntrypoint = []string{BundleBinaryPath, "bundle"}

// BundleImageRef returns the built-in bundle image's reference for a
// binary: its Go build ID (or, without one, its content) names the tag.
func BundleImageRef(binaryPath string) (string, error) {
	id, err := goBuildID(binaryPath)
	if err != nil || id == "" {
		f, err := os.Open(binaryPath)
		if err != nil {
			return "", fmt.Errorf("bundle binary: %w", err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return "", fmt.Errorf("bundle binary %s: %w", binaryPath, err)
		}
		return BundleRepo + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
	}
	sum := sha256.Sum256([]byte(id))
	return BundleRepo + ":" + hex.EncodeToString(sum[:])[:12], nil
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

// checkStatic fails unless path is a statically linked ELF executable: the
// built-in image has nothing but this one file.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("bundle binary %s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("bundle binary %s is dynamically linked; the built-in bundle image needs a static bottle-apply: rebuild it with CGO_ENABLED=0 (make build), or set spec.bundle.image", path)
		}
	}
	if f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_AARCH64 {
		return fmt.Errorf("bundle binary %s is for %s, which the engine cannot run", path, f.Machine)
	}
	return nil
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
			return nil, p.importBundleImage(ctx, ref)
		}
		return nil, p.pull(ctx, ref)
	})
	return err
}

func (p *Provider) importBundleImage(ctx context.Context, ref string) error {
	bin := p.opts.BundleBinary
	if bin == "" {
		return fmt.Errorf("internal: no bundle binary to build %s from", ref)
	}
	if err := checkStatic(bin); err != nil {
		return err
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

// writeRootfs writes a root file system holding the bundle binary and an
// empty /tmp.
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

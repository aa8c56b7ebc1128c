package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
)

// writeFiles puts the agent's files (spec.agent.files) in place in the
// created container, before its command starts, in one tar extracted at
// "/". Parent directories that do not exist yet are made, owned by the
// file's owner; existing ones are not in the tar, since extracting a
// directory entry would change the owner and mode of the directory that
// is there. The roots of the agent's writable named volumes are given to
// the agent's user (mode 0755) on every create, so that a new volume is
// writable for it, also when the run that made it stopped before the
// agent; a host directory's owner is never changed. The engine
// mounts the container's volumes for archive calls before its start.
func (p *Provider) writeFiles(ctx context.Context, id string, cfg containerConfig) error {
	var roots []volumeMount
	if cfg.User != "" {
		// Through one writable mount of each: a read-only one refuses it.
		given := map[string]bool{}
		for _, v := range cfg.Volumes {
			if !v.ReadOnly && !given[v.Name] {
				given[v.Name] = true
				roots = append(roots, v)
			}
		}
	}
	if len(cfg.Files) == 0 && len(roots) == 0 {
		return nil
	}
	stat := func(dir string) (bool, error) {
		_, err := p.eng.ContainerStatPath(ctx, id, dir)
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	now := time.Now()
	dirs := map[string]*tar.Header{}
	for _, f := range cfg.Files {
		for dir := path.Dir(path.Clean(f.Path)); dir != "/"; dir = path.Dir(dir) {
			if _, missing := dirs[dir]; missing {
				break // and so are its parents, already looked at
			}
			ok, err := stat(dir)
			if err != nil {
				return fmt.Errorf("write the files of container %s: look at %s: %w", cfg.Name, dir, err)
			}
			if ok {
				break
			}
			dirs[dir] = &tar.Header{Typeflag: tar.TypeDir, Name: tarName(dir) + "/", Mode: 0o755, Uid: f.UID, Gid: f.GID, ModTime: now}
		}
	}
	for _, v := range roots {
		dirs[path.Clean(v.Target)] = &tar.Header{Typeflag: tar.TypeDir, Name: tarName(v.Target) + "/", Mode: 0o755, Uid: cfg.UID, Gid: cfg.GID, ModTime: now}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Sorted, a directory comes before what is in it.
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := tw.WriteHeader(dirs[d]); err != nil {
			return fmt.Errorf("internal: write the files of container %s: %w", cfg.Name, err)
		}
	}
	paths := make([]string, 0, len(cfg.Files))
	for _, f := range cfg.Files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: tarName(f.Path), Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID,
			Size: int64(len(f.Content)), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("internal: write the files of container %s: %w", cfg.Name, err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return fmt.Errorf("internal: write the files of container %s: %w", cfg.Name, err)
		}
		paths = append(paths, f.Path)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("internal: write the files of container %s: %w", cfg.Name, err)
	}
	// Paths only: never the content.
	zerolog.Ctx(ctx).Debug().Str("container", cfg.Name).Strs("files", paths).Int("volumeRoots", len(roots)).Msg("CopyToContainer")
	if err := p.eng.CopyToContainer(ctx, id, "/", &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("write the files of spec.agent.files into container %s: %w", cfg.Name, err)
	}
	return nil
}

// tarName is an absolute guest path as an entry of a tar extracted at "/".
func tarName(p string) string { return strings.TrimPrefix(path.Clean(p), "/") }

// prepare puts in place what a created container needs before it starts:
// the bundle's secret files, the agent's files and, for an agent with
// credentials, the bottle's CA.
func (p *Provider) prepare(ctx context.Context, id string, cfg containerConfig) error {
	if len(cfg.Secrets) > 0 {
		if err := p.writeSecrets(ctx, id, cfg); err != nil {
			return err
		}
	}
	if cfg.CACert != nil {
		roots, from := p.imageRoots(ctx, id)
		zerolog.Ctx(ctx).Debug().Str("container", cfg.Name).Str("roots", from).Msg("the bottle's CA joins the agent's CA bundle")
		cfg.Files = append(slices.Clone(cfg.Files), bottle.CAFiles(cfg.CACert, roots)...)
	}
	return p.writeFiles(ctx, id, cfg)
}

// writeSecrets copies the bundle's secret files into its own volume at
// bottle.BundleSecretsDir, extracted there: a read-only root file system
// takes no archive at "/". Their content is never logged.
func (p *Provider) writeSecrets(ctx context.Context, id string, cfg containerConfig) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	names := make([]string, 0, len(cfg.Secrets))
	for _, f := range cfg.Secrets {
		name := strings.TrimPrefix(path.Clean(f.Path), bottle.BundleSecretsDir+"/")
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID,
			Size: int64(len(f.Content)), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("internal: write the secret files of container %s: %w", cfg.Name, err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return fmt.Errorf("internal: write the secret files of container %s: %w", cfg.Name, err)
		}
		names = append(names, f.Path)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("internal: write the secret files of container %s: %w", cfg.Name, err)
	}
	zerolog.Ctx(ctx).Debug().Str("container", cfg.Name).Strs("files", names).Msg("CopyToContainer")
	if err := p.eng.CopyToContainer(ctx, id, bottle.BundleSecretsDir, &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("copy the credentials of spec.bundle.egress.credentials into container %s: %w", cfg.Name, err)
	}
	return nil
}

// imageRoots is the CA bundle of the created container's image, the
// first of bottle.ImageCABundles that is a file (a symbolic link is
// followed within the container, twice at most); where the image has none
// (a distroless or scratch image), the roots bottle-apply carries
// (ca.FallbackRootsPEM). It says where they came from.
func (p *Provider) imageRoots(ctx context.Context, id string) ([]byte, string) {
	for _, start := range bottle.ImageCABundles {
		at := start
		for range 3 {
			data, link, err := p.readFile(ctx, id, at)
			if err != nil {
				break
			}
			if link == "" {
				if len(data) > 0 {
					return data, at
				}
				break
			}
			if !path.IsAbs(link) {
				link = path.Join(path.Dir(at), link)
			}
			at = link
		}
	}
	return ca.FallbackRootsPEM(), "bottle-apply's own roots (the image has no CA bundle)"
}

// readFile reads one file of a container through the archive API: its
// content, or the target of the symbolic link it is.
func (p *Provider) readFile(ctx context.Context, id, file string) (data []byte, link string, err error) {
	rc, _, err := p.eng.CopyFromContainer(ctx, id, file)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		return nil, "", err
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		return nil, hdr.Linkname, nil
	case tar.TypeReg:
		if hdr.Size > bottle.MaxCABundleSize {
			return nil, "", fmt.Errorf("%s is %d bytes, more than a CA bundle", file, hdr.Size)
		}
		data, err := io.ReadAll(io.LimitReader(tr, bottle.MaxCABundleSize))
		return data, "", err
	}
	return nil, "", fmt.Errorf("%s is not a file", file)
}

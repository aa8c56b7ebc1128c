package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/rs/zerolog"
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

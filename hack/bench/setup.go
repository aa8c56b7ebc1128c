package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

const (
	composeModule  = "github.com/docker/compose/v2"
	composeVersion = "v2.40.3"
	benchImage     = "bb:local"
)

// goCmd runs a go command in dir and returns its stdout; its stderr goes
// into the error.
func goCmd(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// buildBottleApply builds bottle-apply into dir, with the linux
// bottle-bundle for this machine's architecture beside it (the built-in
// bundle image of the local engine is made of it), as make build does.
func buildBottleApply(ctx context.Context, root, dir string) (string, error) {
	bundle := filepath.Join(dir, bundlebin.Name(runtime.GOARCH))
	if _, err := goCmd(ctx, root, []string{"CGO_ENABLED=0", "GOOS=linux"}, "build", "-trimpath", "-o", bundle, "./cmd/bottle-bundle"); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bottle-apply")
	_, err := goCmd(ctx, root, []string{"CGO_ENABLED=0"}, "build", "-o", bin, "./cmd/bottle-apply")
	return bin, err
}

// compose is the docker compose binary to compare with, or why there is
// none.
type compose struct {
	Bin       string  `json:"bin,omitempty"`
	Version   string  `json:"version,omitempty"`
	Built     bool    `json:"built"`
	BuildSecs float64 `json:"buildSeconds,omitempty"`
	Err       string  `json:"error,omitempty"`
}

// findCompose returns $COMPOSE_BIN, else the cached build of compose
// v2.40.3, else builds it once into the cache from its module source.
func findCompose(ctx context.Context, work string) compose {
	c := compose{Bin: os.Getenv("COMPOSE_BIN")}
	if c.Bin == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return compose{Err: err.Error()}
		}
		c.Bin = filepath.Join(cache, "bottle-apply", "bench", "docker-compose-"+composeVersion)
		if _, err := os.Stat(c.Bin); err != nil {
			logf("building docker compose %s into %s (once; later runs reuse it)", composeVersion, c.Bin)
			t0 := time.Now()
			if err := buildCompose(ctx, work, c.Bin); err != nil {
				return compose{Err: err.Error()}
			}
			c.Built, c.BuildSecs = true, time.Since(t0).Seconds()
		}
	}
	out, err := exec.CommandContext(ctx, c.Bin, "version", "--short").CombinedOutput()
	if err != nil {
		return compose{Bin: c.Bin, Err: strings.TrimSuffix(fmt.Sprintf("%s version: %v: %s", c.Bin, err, bytes.TrimSpace(out)), ": ")}
	}
	c.Version = strings.TrimSpace(string(out))
	return c
}

// buildCompose builds compose's ./cmd from a writable copy of its module
// source, the way its release is built (static, trimmed paths, version set).
func buildCompose(ctx context.Context, work, dst string) error {
	out, err := goCmd(ctx, work, nil, "mod", "download", "-json", composeModule+"@"+composeVersion)
	var mod struct{ Dir, Error string }
	if err == nil {
		err = json.Unmarshal(out, &mod)
	}
	if err == nil && mod.Error != "" {
		err = errors.New(mod.Error)
	}
	if err != nil {
		return fmt.Errorf("download %s@%s: %w", composeModule, composeVersion, err)
	}
	src := filepath.Join(work, "compose-src")
	if err := copyTree(mod.Dir, src); err != nil {
		return fmt.Errorf("copy compose source: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	ldflags := "-w -X " + composeModule + "/internal.Version=" + composeVersion
	if _, err := goCmd(ctx, src, []string{"CGO_ENABLED=0"}, "build", "-trimpath", "-ldflags", ldflags, "-o", dst+".tmp", "./cmd"); err != nil {
		return fmt.Errorf("build compose: %w", err)
	}
	return os.Rename(dst+".tmp", dst)
}

// copyTree copies a read-only module directory into a writable one.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// ensureImage imports bb:local (FROM scratch, a static busybox and links
// for its applets) unless the engine has it, and returns a function that
// removes it again if this run imported it.
func ensureImage(ctx context.Context, dc *client.Client) (func(), error) {
	if _, err := dc.ImageInspect(ctx, benchImage); err == nil {
		return func() {}, nil
	} else if !cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("inspect %s: %w", benchImage, err)
	}
	bb, err := testenv.Busybox()
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", benchImage, err)
	}
	if err := testenv.ImportBusybox(ctx, dc, bb, benchImage); err != nil {
		return nil, err
	}
	return func() {
		_, err := dc.ImageRemove(context.Background(), benchImage, image.RemoveOptions{PruneChildren: true})
		if err != nil {
			logf("could not remove %s: %v", benchImage, err)
		}
	}, nil
}

// composeFile returns the peer compose file under project name p, with
// GREETING set to greeting in the agent's environment.
func composeFile(peer []byte, p, greeting string) ([]byte, error) {
	const name, env = "name: peer-bottle\n", "      HTTPS_PROXY: http://192.168.231.2:8888\n"
	s := string(peer)
	if !strings.Contains(s, name) || !strings.Contains(s, env) {
		return nil, fmt.Errorf("peer-compose.yml changed shape: want the lines %q and %q", name, env)
	}
	s = strings.Replace(s, name, "name: "+p+"\n", 1)
	s = strings.Replace(s, env, env+"      GREETING: "+greeting+"\n", 1)
	// The agent's home on a named volume, as in the bottle: a no-op then
	// lists volumes on both sides.
	const deps = "    depends_on: [bundle]\n"
	if !strings.Contains(s, deps) {
		return nil, fmt.Errorf("peer-compose.yml changed shape: want the agent's line %q", deps)
	}
	s = strings.Replace(s, deps, deps+"    volumes: [\"work:/home/agent\"]\n", 1)
	s += "volumes:\n  work: {}\n"
	return []byte(s), nil
}

// bottleSpec is the bottle-apply equivalent of the peer compose project,
// with the agent's home on a named volume; an empty subnet is picked from
// the pool.
func bottleSpec(name, subnet, greeting string) []byte {
	s := fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s
spec:
  backend: docker
  agent:
    image: %s
    command: ["sleep", "infinity"]
    env:
      GREETING: %s
    volumes: ["work:/home/agent"]
`, name, benchImage, greeting)
	if subnet != "" {
		s += "  network:\n    subnet: " + subnet + "\n"
	}
	return []byte(s)
}

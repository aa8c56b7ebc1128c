package app

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/providers/smolvm"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// Providers is every backend, for the reconciler and for exec and cp.
type Providers struct {
	engine  string // the Docker engine's address, "" for the default
	bundles bundles
	docker  *docker.Provider
	smolvm  *smolvm.Provider
	all     []reconcile.Provider
}

func NewProviders(o *Options) (*Providers, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	engine := os.Getenv("DOCKER_HOST")
	if host, err := dockerHostFromContext(); err != nil {
		return nil, err
	} else if host != "" {
		opts = append(opts, client.WithHost(host))
		engine = host
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w; check DOCKER_HOST", err)
	}
	bs, err := shippedBundles()
	if err != nil {
		return nil, err
	}
	dp := docker.New(c, docker.Options{BundleImage: bs.ref, BundleBinary: bs.dir.Path, SubnetPool: o.SubnetPool, Version: o.Version})
	// smolvm is optional: without the binary it observes nothing, and only
	// smolvm bottles fail, saying so.
	sp := smolvm.New(smolvm.ExecRunner{}, smolvm.Options{Images: dp, Version: o.Version})
	return &Providers{engine: engine, bundles: bs, docker: dp, smolvm: sp, all: []reconcile.Provider{dp, sp}}, nil
}

// Logs streams the decision log of the bottle's bundle (its daemons' JSON
// lines), following it with follow, until ctx is done.
func Logs(ctx context.Context, o *Options, bottleName string, follow bool) (io.ReadCloser, error) {
	ps, err := NewProviders(o)
	if err != nil {
		return nil, err
	}
	return ps.docker.BundleLogs(ctx, bottleName, follow)
}

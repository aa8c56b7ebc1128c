package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/providers/kubernetes"
	"github.com/bottle-apply/bottle-apply/providers/smolvm"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Providers is every backend, for the reconciler and for exec and cp.
type Providers struct {
	endpoint endpoint // the Docker engine's address
	bundles  bundles
	docker   *docker.Provider
	smolvm   *smolvm.Provider
	kube     *kubernetes.Provider
	all      []reconcile.Provider

	host       *hostCache
	engineMu   sync.Mutex
	engineInfo *Engine // once Engine has looked it up

	// keptCA returns the CA that apply keeps for bottle b, whose
	// credentials go to hosts, without making or saving one: what the
	// self-test of --verify, which reads no secrets, checks interception
	// against. made reports that none was kept (or the one kept no longer
	// fits hosts), so the CA returned is not the bundle's. It is called
	// for several bottles at once. nil leaves the interception checks out
	// of --verify, saying so in the log; an apply's self-test takes the CA
	// the run resolved (bottle.Bottle.CA) and never calls it.
	keptCA func(ctx context.Context, b *bottle.Bottle, hosts []string) (c *bottle.CA, made bool, err error)
}

// NewProviders makes the providers over the Docker engine that the
// environment names, as the docker CLI finds it. It makes no call: an
// address that can never work (an unknown scheme, a context that is not
// there) is an error here.
func NewProviders(o *Options) (*Providers, error) {
	ep, err := findEndpoint()
	if err != nil {
		return nil, err
	}
	opts, err := ep.clientOpts()
	if err != nil {
		return nil, err
	}
	c, err := client.NewClientWithOpts(append(opts, client.WithAPIVersionNegotiation())...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s %s: %w", ep.Source, ep.Host, err)
	}
	bs, err := shippedBundles()
	if err != nil {
		return nil, err
	}
	hc := &hostCache{}
	dp := docker.New(c, docker.Options{BundleImage: bs.ref, BundleBinary: bs.dir.Path, SubnetPool: o.SubnetPool, Version: o.Version, HostCache: hc})
	// smolvm is optional: without the binary it observes nothing, and only
	// smolvm bottles fail, saying so.
	sp := smolvm.New(smolvm.ExecRunner{}, smolvm.Options{Images: dp, Version: o.Version})
	// kubernetes makes no call either until a bottle of the run is on it.
	kp := kubernetes.New(kubernetes.Options{Kubeconfig: o.Kubeconfig, Version: o.Version, PodCIDRs: o.KubePodCIDRs, ServiceCIDRs: o.KubeServiceCIDRs})
	ps := &Providers{endpoint: ep, bundles: bs, docker: dp, smolvm: sp, kube: kp, all: []reconcile.Provider{dp, sp, kp}, host: hc}
	ps.keptCA = func(ctx context.Context, b *bottle.Bottle, hosts []string) (*bottle.CA, bool, error) {
		return ps.loadCA(ctx, b, hosts, false)
	}
	return ps, nil
}

// use says which backends the bottles of a run are on: the docker
// engine is asked only when one of them needs it (a docker bottle, or a
// smolvm one, whose bundle is a container), so that a run of kubernetes
// bottles alone needs no docker. A bottle moved from docker to
// kubernetes leaves its containers behind: destroy it before the move.
func (ps *Providers) use(bottles []bottle.Bottle) error {
	if err := ps.kube.Use(bottles); err != nil {
		return err
	}
	ps.all = []reconcile.Provider{ps.kube}
	for _, b := range bottles {
		if b.Spec.Backend != spec.BackendKubernetes {
			ps.all = []reconcile.Provider{ps.docker, ps.smolvm, ps.kube}
			break
		}
	}
	return nil
}

// usesDocker reports whether the run needs the docker engine.
func (ps *Providers) usesDocker() bool {
	for _, p := range ps.all {
		if p == reconcile.Provider(ps.docker) {
			return true
		}
	}
	return false
}

// Logs streams the decision log of the bottle's bundle (its daemons' JSON
// lines), following it with follow, until ctx is done.
func Logs(ctx context.Context, o *Options, bottleName string, follow bool) (io.ReadCloser, error) {
	ps, err := NewProviders(o)
	if err != nil {
		return nil, err
	}
	rc, derr := ps.docker.BundleLogs(ctx, bottleName, follow)
	if derr == nil {
		return rc, nil
	}
	ps.kube.ConnectTo(o.KubeContext)
	rc, kerr := ps.kube.BundleLogs(ctx, bottleName, follow)
	if kerr == nil {
		return rc, nil
	}
	return nil, errors.Join(derr, kerr)
}

// learnHost makes the engine host's addresses known to the docker
// provider, from the record of the engine or from the engine.
func (ps *Providers) learnHost(ctx context.Context) error {
	eng, err := ps.Engine(ctx)
	if err != nil {
		return err
	}
	ps.host.setEngine(eng.ID)
	if err := ps.docker.LearnHost(ctx); err != nil {
		return fmt.Errorf("%w\nthe bundles refuse every address of the engine's host: check that the engine can run a container of the built-in bundle image on its host's network", err)
	}
	return nil
}

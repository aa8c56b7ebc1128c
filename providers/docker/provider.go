// Package docker is the reconcile.Provider for a bottle's Docker resources:
// its networks, the bundle container and, on the docker backend, the agent
// container.
package docker

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/docker/docker/client"
	"golang.org/x/sync/singleflight"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// ProviderName is the provider's name in resource IDs.
const ProviderName = "docker"

// Options configure the provider.
type Options struct {
	// BundleImage is the reference of the built-in bundle image, used when a
	// spec leaves spec.bundle.image empty (bundleimage.Ref names it); empty
	// when bottle-apply ships no bottle-bundle build, and then such a spec
	// fails to plan.
	BundleImage string
	// BundleBinary returns the static linux bottle-bundle build for an
	// architecture (a GOARCH): the built-in bundle image is made of the
	// engine's when the engine does not have the image yet, and the
	// self-test copies it into docker agents as the probe.
	BundleBinary func(goarch string) (string, error)
	// SubnetPool is where automatic subnets come from; bottle.DefaultSubnetPool
	// when empty.
	SubnetPool string
	// Version is recorded in a label for humans; it is not part of any hash.
	Version string
	// HostCache keeps the engine host's addresses between runs; nil
	// learns them once a Provider.
	HostCache HostCache
}

// Provider manages docker networks and containers.
type Provider struct {
	eng    engine
	opts   Options
	images singleflight.Group

	// info is the engine's answer to docker info, asked once, and only
	// for the locks or when a bottle-bundle build must be chosen.
	info struct {
		sync.Mutex
		known bool
		EngineInfo
	}

	// unstartable holds the containers (engine ID -> the engine's error)
	// that the engine refused to start for good in this run: Observe
	// reports them failed, so that the next round replaces them.
	unstartable sync.Map

	// host is what this run knows of the engine's host.
	host hostState

	// listed is the last image list Observe made.
	listed   *imageIndex
	listedMu sync.Mutex

	// negotiated is set once the client settled the API version.
	negotiated  atomic.Bool
	negotiateMu sync.Mutex
}

var _ reconcile.Provider = (*Provider)(nil)

// New returns a provider over a Docker client (create it with
// client.FromEnv and client.WithAPIVersionNegotiation).
func New(c *client.Client, opts Options) *Provider { return newProvider(c, opts) }

func newProvider(e engine, opts Options) *Provider {
	if opts.SubnetPool == "" {
		opts.SubnetPool = bottle.DefaultSubnetPool
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	return &Provider{eng: e, opts: opts}
}

// Name implements reconcile.Provider.
func (p *Provider) Name() string { return ProviderName }

// Desired implements reconcile.Provider. Bottles must be resolved first.
func (p *Provider) Desired(bottles []*bottle.Bottle, _ []reconcile.Resource) ([]reconcile.Resource, error) {
	var out []reconcile.Resource
	for _, b := range onEngine(bottles) {
		if b.Spec.Backend == spec.BackendDocker && !b.SecretsResolved() {
			return nil, fmt.Errorf("internal: bottle %s: the secrets of spec.agent.secretEnv were not read", b.Metadata.Name)
		}
		if !b.CredentialsResolved() {
			return nil, fmt.Errorf("internal: bottle %s: the credentials of spec.bundle.egress.credentials were not read", b.Metadata.Name)
		}
		if b.Spec.Backend == spec.BackendDocker {
			if err := workspaceResolved(b); err != nil {
				return nil, err
			}
		}
		if b.Spec.Bundle.Image == "" && p.opts.BundleImage == "" {
			return nil, fmt.Errorf("bottle %s uses the built-in bundle image, but this bottle-apply ships no bottle-bundle build to make it of "+
				"(make build puts bin/bottle-bundle-linux-* beside bin/bottle-apply): install bottle-apply with them, or set spec.bundle.image to a bundle image of your own", b.Metadata.Name)
		}
		out = append(out, withImageIDs(translate(b, p.opts.BundleImage, p.opts.Version), p.lastListed())...)
	}
	return out, nil
}

// withImageIDs gives each container the content ID its image names in the
// last image list, so that an image rebuilt under the same tag replaces
// it. Not the built-in bundle image: its tag names the bottle-bundle
// builds, and the same builds imported again are the same bundle.
func withImageIDs(rs []reconcile.Resource, idx *imageIndex) []reconcile.Resource {
	for i := range rs {
		if cfg, ok := rs[i].Config.(containerConfig); ok && !cfg.Builtin {
			rs[i].ImageID = idx.id(cfg.Image)
		}
	}
	return rs
}

// workspaceResolved refuses a docker agent whose files were not read or
// whose host directories were not resolved, rather than make it without
// them.
func workspaceResolved(b *bottle.Bottle) error {
	if !b.FilesResolved() {
		return fmt.Errorf("internal: bottle %s: the files of spec.agent.files were not read", b.Metadata.Name)
	}
	for _, v := range b.Spec.Agent.Volumes {
		if !v.Named() && v.HostPath == "" {
			return fmt.Errorf("internal: bottle %s: the host directory %s of spec.agent.volumes was not resolved", b.Metadata.Name, v.Source)
		}
	}
	return nil
}

// onEngine are the bottles with resources on the engine: docker's, and
// smolvm's, whose networks and bundle are containers. A bottle on
// kubernetes has none.
func onEngine(bottles []*bottle.Bottle) []*bottle.Bottle {
	return slices.DeleteFunc(slices.Clone(bottles), func(b *bottle.Bottle) bool { return b.Spec.Backend == spec.BackendKubernetes })
}

// Package smolvm is the reconcile.Provider for the agent of bottles with
// spec.backend: smolvm: one smolvm microVM ("machine") per bottle, driven
// through the smolvm CLI (0.8.0 to 1.9.x) behind the Runner interface.
//
// The docker provider makes the bottle's networks and bundle container; the
// machine may reach the bundle's address (as a /32) and the spec's
// allowCIDRs, nothing else, and its HTTP(S)_PROXY points at the bundle.
//
// Ownership: from smolvm 1.8 on, machines carry the same io.bottle-apply.*
// labels as docker resources. Before 1.8 smolvm cannot label a machine, and
// bottle-apply keeps a small record per machine it created in
// Options.StateDir, next to the reserved name prefix "bottle-". A machine
// with neither is never touched.
//
// Workspaces: spec.agent.volumes are -v mounts of machine create (smolvm
// has no volumes of its own: a named volume is a directory of StateDir,
// a persistent resource of this provider, see volumes.go);
// spec.agent.files are copied in once the machine runs (files.go);
// spec.agent.user is applied by setpriv at exec (guest.go).
package smolvm

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

const defaultBinary = "smolvm"

// Options configure the provider. Zero values take the defaults.
type Options struct {
	// Binary is the smolvm executable: "smolvm" (looked up on PATH) by
	// default.
	Binary string
	// CacheDir holds image archives and packs: the user cache directory
	// ($XDG_CACHE_HOME or ~/.cache on Linux) + /bottle-apply/smolvm by
	// default.
	CacheDir string
	// StateDir holds the ownership records used before smolvm 1.8:
	// $XDG_STATE_HOME (or ~/.local/state) + /bottle-apply/smolvm by default.
	StateDir string
	// Images reads images from the local Docker engine; nil means images
	// always come from their registry.
	Images ImageSource
	// Version is bottle-apply's version, recorded in a label for humans;
	// it is not part of any hash.
	Version string
}

// Provider manages smolvm machines.
type Provider struct {
	cli  cli
	opts Options

	mu      sync.Mutex
	ver     Version
	verOK   bool // ver was detected
	fake    bool // the smolvm found is the tests' fake
	missing bool // the last detection found no smolvm binary

	images singleflight.Group // per image-cache key
}

var _ reconcile.Provider = (*Provider)(nil)

// New returns a provider that runs smolvm through r (ExecRunner{} for real).
func New(r Runner, opts Options) *Provider {
	if opts.Binary == "" {
		opts.Binary = defaultBinary
	}
	if opts.CacheDir == "" {
		opts.CacheDir = xdg.CacheDir("smolvm")
	}
	if opts.StateDir == "" {
		opts.StateDir = xdg.StateDir("smolvm")
	}
	// smolvm tells a docker-save archive from a registry reference by a
	// leading "/" (or "./"): keep the cache absolute.
	for _, d := range []*string{&opts.CacheDir, &opts.StateDir} {
		if *d != "" {
			if abs, err := filepath.Abs(*d); err == nil {
				*d = abs
			}
		}
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	return &Provider{cli: cli{r: r, bin: opts.Binary}, opts: opts}
}

// Name implements reconcile.Provider.
func (p *Provider) Name() string { return ProviderName }

// Available detects the smolvm version (once; a failure is retried on the
// next call). When the binary cannot be run the error wraps
// ErrNotInstalled.
func (p *Provider) Available(ctx context.Context) (Version, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verOK {
		return p.ver, nil
	}
	v, fake, err := p.cli.version(ctx)
	if err != nil {
		p.missing = errors.Is(err, ErrNotInstalled)
		return Version{}, fmt.Errorf("detect smolvm version: %w", err)
	}
	p.ver, p.verOK, p.missing, p.fake = v, true, false, fake
	zerolog.Ctx(ctx).Debug().Str("provider", ProviderName).Str("version", v.String()).Msg("smolvm detected")
	return v, nil
}

// NotVerifiable says why the self-test cannot judge this smolvm's machines
// ("" when it can): the fake smolvm of the tests runs guest commands on the
// host, whose network is not the VM's.
func (p *Provider) NotVerifiable(ctx context.Context) string {
	if _, err := p.Available(ctx); err != nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fake {
		return "not verifiable with this smolvm (" + FakeAnnouncement + ": its guest commands run on the host)"
	}
	return ""
}

// Missing reports whether the last Observe or detection found no smolvm
// binary, without running smolvm.
func (p *Provider) Missing() bool {
	_, _, missing := p.detected()
	return missing
}

// detected returns what the last detection found, without running smolvm.
func (p *Provider) detected() (v Version, ok, missing bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ver, p.verOK, p.missing
}

// Resolve implements reconcile.Provider: a machine needs no choice of its
// own (its bundle's address is the docker provider's).
func (p *Provider) Resolve([]*bottle.Bottle, []reconcile.Resource) error { return nil }

// Desired implements reconcile.Provider: one agent machine per smolvm
// bottle. Bottles must be resolved first (the docker provider fills in the
// bundle IP). If Observe found no smolvm binary, a smolvm bottle is an
// error now rather than at apply.
func (p *Provider) Desired(bottles []*bottle.Bottle, _ []reconcile.Resource) ([]reconcile.Resource, error) {
	v, known, missing := p.detected()
	route := ""
	if known {
		route = p.plannedRoute(v)
	}
	var (
		out  []reconcile.Resource
		errs []error
	)
	for _, b := range bottles {
		if b.Spec.Backend != spec.BackendSmolvm {
			continue
		}
		if missing {
			errs = append(errs, fmt.Errorf("bottle %s has backend: smolvm: %w", b.Metadata.Name, ErrNotInstalled))
			continue
		}
		r, err := translate(b, p.opts.Version, route)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p.opts.Images != nil {
			// What the image is now in the local engine: a machine made
			// of other content is replaced (and its archive or pack made
			// anew, keyed by content).
			r.ImageID = p.opts.Images.ListedImageID(b.Spec.Agent.Image)
		}
		out = append(out, r)
		user, _ := normalUser(b.Spec.Agent.User) // translate checked it
		for _, v := range translateVolumes(b, user, p.opts.Version) {
			if dir := p.VolumeDataDir(v.Bottle, v.Role); dir != "" {
				v.Summary = map[string]string{"path": dir}
			}
			out = append(out, v)
		}
	}
	return out, errors.Join(errs...)
}

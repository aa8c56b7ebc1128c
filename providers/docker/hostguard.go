package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// HostCache keeps the engine's host addresses between runs, so that a run
// starts no container to learn them (app keeps them per engine).
type HostCache interface {
	LoadHostAddrs() ([]netip.Addr, bool)
	SaveHostAddrs([]netip.Addr)
}

// RoleHostGuard labels the short-lived container that guards the host.
const RoleHostGuard = "hostguard"

// hostEngine is what the host guard needs on top of engine.
type hostEngine interface {
	engine
	ContainerWait(ctx context.Context, containerID string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
}

var _ hostEngine = (*client.Client)(nil)

// hostState is what a run knows of the engine's host.
type hostState struct {
	mu    sync.Mutex
	known bool
	addrs []netip.Addr
	// pools are the ranges the guard's rule must cover: the subnet pool
	// and every subnet a spec sets outside it (Resolve adds them).
	pools []netip.Prefix
	// guardDone is closed when the guard's run ends; guardErr is then why
	// it failed. A failed run is run again by the next step that wants
	// it.
	guardMu     sync.Mutex
	guardDone   chan struct{}
	guardErr    error
	guardFailed bool
}

// LearnHost makes the engine host's interface addresses known to the run,
// for the bundles to refuse: from the cache, else from a run of the host
// guard that installs nothing (once a Provider). Call it before a plan.
func (p *Provider) LearnHost(ctx context.Context) error {
	_, err := p.hostAddrs(ctx)
	return err
}

// LearnCachedHost makes the engine host's addresses known from the cache
// alone, starting nothing, for a command that only reads (status); false
// when the cache has none.
func (p *Provider) LearnCachedHost() bool {
	p.host.mu.Lock()
	defer p.host.mu.Unlock()
	if !p.host.known && p.opts.HostCache != nil {
		if addrs, ok := p.opts.HostCache.LoadHostAddrs(); ok {
			p.host.known, p.host.addrs = true, addrs
		}
	}
	return p.host.known
}

// HostAddrs are the engine host's interface addresses as the run knows
// them (LearnHost), but those inside the subnet pool.
func (p *Provider) HostAddrs() []netip.Addr {
	p.host.mu.Lock()
	defer p.host.mu.Unlock()
	return slices.Clone(p.host.addrs)
}

func (p *Provider) hostAddrs(ctx context.Context) ([]netip.Addr, error) {
	p.host.mu.Lock()
	defer p.host.mu.Unlock()
	if p.host.known {
		return p.host.addrs, nil
	}
	if p.opts.HostCache != nil {
		if addrs, ok := p.opts.HostCache.LoadHostAddrs(); ok {
			p.host.known, p.host.addrs = true, addrs
			return addrs, nil
		}
	}
	addrs, err := p.runHostGuard(ctx, nil)
	if errors.Is(err, errNoHostEngine) {
		p.host.known = true // the fake engine's host has no address
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if pool, err := bottle.ParsePrefix(p.opts.SubnetPool); err == nil {
		addrs = outside(addrs, []netip.Prefix{pool})
	}
	p.host.known, p.host.addrs = true, addrs
	if p.opts.HostCache != nil {
		p.opts.HostCache.SaveHostAddrs(addrs)
	}
	return addrs, nil
}

// startGuard starts the host guard that installs the rule for the run's
// pools, unless it ran or runs already, and returns a channel closed when
// it is done. A run that creates networks starts it then, so that it
// overlaps them; the bundle waits for it (guardBundle). A guard that
// failed (cut short by its step's context when a round ended early, or an
// engine error) is started again by the next step that wants it.
func (p *Provider) startGuard(ctx context.Context) <-chan struct{} {
	p.host.guardMu.Lock()
	defer p.host.guardMu.Unlock()
	if done := p.host.guardDone; done != nil {
		select {
		case <-done:
			if !p.host.guardFailed {
				return done
			}
		default:
			return done
		}
	}
	done := make(chan struct{})
	p.host.guardDone = done
	go func() {
		err := p.guardHost(ctx)
		p.host.guardMu.Lock()
		// Any failure is tried again by the next step that waits: a
		// context cut short, or an engine error the next round may not
		// meet.
		p.host.guardErr, p.host.guardFailed = err, err != nil
		p.host.guardMu.Unlock()
		close(done)
	}()
	return done
}

// guarded waits for the host guard, started now if need be, and says why
// it failed.
func (p *Provider) guarded(ctx context.Context) error {
	for {
		select {
		case <-p.startGuard(ctx):
		case <-ctx.Done():
			return ctx.Err()
		}
		p.host.guardMu.Lock()
		err, failed := p.host.guardErr, p.host.guardFailed
		p.host.guardMu.Unlock()
		if !failed || !errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return err
		}
		// Cut short by another step's round, not ours: again, now.
	}
}

// guardHost installs the host guard's rule for the run's pools, before the
// first bundle is created or started: after a reboot or a firewall reload
// the rule is gone, and the bundle's own refusals know only the addresses
// the host had when it was made. What the guard saw of the host goes to
// the cache: if it changed, the next run updates the bundles.
func (p *Provider) guardHost(ctx context.Context) error {
	p.host.mu.Lock()
	pools := slices.Clone(p.host.pools)
	p.host.mu.Unlock()
	if len(pools) == 0 {
		pool, err := bottle.ParsePrefix(p.opts.SubnetPool)
		if err != nil {
			return fmt.Errorf("subnet pool %q: %w", p.opts.SubnetPool, err)
		}
		pools = []netip.Prefix{pool}
	}
	addrs, err := p.runHostGuard(ctx, pools)
	if errors.Is(err, errNoHostEngine) {
		// The unit tests' fake engine has no host to guard; every
		// *client.Client can run the guard.
		return nil
	}
	if err != nil {
		return err
	}
	addrs = outside(addrs, pools)
	p.host.mu.Lock()
	defer p.host.mu.Unlock()
	if p.host.known && !slices.Equal(addrs, p.host.addrs) {
		zerolog.Ctx(ctx).Info().Strs("was", addrStrings(p.host.addrs)).Strs("now", addrStrings(addrs)).
			Msg("the engine's host has new addresses: the next run updates the bundles (the host guard's rule covers them meanwhile)")
	}
	if p.opts.HostCache != nil {
		p.opts.HostCache.SaveHostAddrs(addrs)
	}
	return nil
}

// staleGuard is how old a host guard's container must be for another run
// to remove it: a guard is done in a second.
const staleGuard = 5 * time.Minute

// errNoHostEngine says that the engine client cannot run the host guard.
var errNoHostEngine = errors.New("internal: this engine client cannot run containers to the end")

// runHostGuard runs `bottle-bundle hostguard` in a container on the
// engine host's network: with pools, it installs the rule that drops what
// those ranges send to the host (NET_ADMIN, nothing else); it always
// reports the host's addresses. The container is removed after.
func (p *Provider) runHostGuard(ctx context.Context, pools []netip.Prefix) (addrs []netip.Addr, err error) {
	he, ok := p.eng.(hostEngine)
	if !ok {
		return nil, errNoHostEngine
	}
	what := "learn the engine host's addresses"
	args := []string{"hostguard"}
	capAdd := []string(nil)
	if len(pools) > 0 {
		what = "guard the engine's host"
		args = append(args, "-install")
		for _, p := range pools {
			args = append(args, "-pool", p.String())
		}
		capAdd = []string{"NET_ADMIN"}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s (a container of the built-in bundle image on the host's network, with NET_ADMIN, installs a firewall rule that keeps bottles off the host): %w", what, err)
		}
	}()
	ref := p.opts.BundleImage
	if ref == "" {
		return nil, errors.New("this bottle-apply ships no bottle-bundle build to run it (make build puts bin/bottle-bundle-linux-* beside bin/bottle-apply)")
	}
	if err := p.ensureImage(ctx, ref, true); err != nil {
		return nil, err
	}
	// A run killed while its guard ran left the container: remove those
	// made long enough ago that no run still reads them.
	if old, err := he.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", bottle.LabelRole+"="+RoleHostGuard))}); err == nil {
		for _, o := range old {
			if time.Since(time.Unix(o.Created, 0)) > staleGuard {
				_ = he.ContainerRemove(ctx, o.ID, container.RemoveOptions{Force: true})
			}
		}
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := "bottle-apply-hostguard-" + hex.EncodeToString(suffix[:])
	config := &container.Config{Image: ref, Cmd: args, Labels: map[string]string{bottle.LabelRole: RoleHostGuard, bottle.LabelVersion: p.opts.Version}}
	// The host's user namespace too: an engine with userns-remap refuses
	// the host's network otherwise.
	host := &container.HostConfig{NetworkMode: "host", UsernsMode: "host", CapDrop: []string{"ALL"}, CapAdd: capAdd,
		ReadonlyRootfs: true, SecurityOpt: []string{"no-new-privileges"}}
	zerolog.Ctx(ctx).Debug().Str("container", name).Strs("args", args).Msg("ContainerCreate")
	created, err := he.ContainerCreate(ctx, config, host, nil, nil, name)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	defer func() {
		_ = he.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	}()
	if err := he.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return nil, fmt.Errorf("start container %s: %w", name, err)
	}
	waitc, errc := he.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	var code int64
	select {
	case w := <-waitc:
		code = w.StatusCode
	case err := <-errc:
		return nil, fmt.Errorf("wait for container %s: %w", name, err)
	}
	rc, err := he.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, fmt.Errorf("read the output of container %s: %w", name, err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, io.LimitReader(rc, 1<<20)); err != nil {
		return nil, fmt.Errorf("read the output of container %s: %w", name, err)
	}
	if code != 0 {
		return nil, fmt.Errorf("it exited %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	return parseHostReport(stdout.Bytes())
}

// parseHostReport reads the addresses of the guard's JSON report, but
// those on the engine's own bridges: they come and go with its networks
// (another tool's compose project), and a bundle that knew them would be
// replaced each time. The guard's rule covers them.
func parseHostReport(b []byte) ([]netip.Addr, error) {
	var r struct {
		Addrs   []string `json:"addrs"`
		Bridges []string `json:"bridges"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read its report %q: %w", clipBytes(b, 200), err)
	}
	out := make([]netip.Addr, 0, len(r.Addrs))
	for _, s := range r.Addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("its report names %q, not an address", s)
		}
		if !slices.Contains(r.Bridges, s) {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}

func clipBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func addrStrings(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// outside drops the addresses that pools hold: the bottles' gateways,
// which the bundles refuse as part of the pool. A bottle made or removed
// then changes no bundle.
func outside(addrs []netip.Addr, pools []netip.Prefix) []netip.Addr {
	return slices.DeleteFunc(slices.Clone(addrs), func(a netip.Addr) bool {
		return slices.ContainsFunc(pools, func(p netip.Prefix) bool { return p.Contains(a) })
	})
}

package app

import (
	"context"
	"fmt"
	"runtime"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/bundle"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/probe"
	"github.com/bottle-apply/bottle-apply/spec"
	"github.com/bottle-apply/bottle-apply/verify"
)

// verifyBottles runs the self-test in the agent of each bottle, whatever
// its backend, and returns one report per bottle in their order.
func (ps *Providers) verifyBottles(ctx context.Context, bottles []bottle.Bottle) ([]verify.Report, error) {
	// A few engine calls each, which need not wait for one another.
	var host []string
	subjects := make([]verify.Subject, len(bottles))
	var g errgroup.Group
	g.SetLimit(8)
	g.Go(func() error { host = ps.hostInterfaceAddrs(ctx); return nil })
	for i := range bottles {
		g.Go(func() error { subjects[i] = ps.subject(ctx, &bottles[i]); return nil })
	}
	_ = g.Wait()
	for i := range subjects {
		if bottles[i].Spec.Backend != spec.BackendKubernetes {
			subjects[i].Target.HostInterfaceAddrs = host
		}
	}
	return verify.Run(ctx, subjects)
}

// hostInterfaceAddrs are the addresses of the engine's host (docker0,
// every bridge's gateway, its LAN and public addresses) that the checks
// try directly and through the egress proxy: what the run learned, or the
// record of the engine. An engine that cannot tell is no error: the
// checks it would feed are left out, and the log says why.
func (ps *Providers) hostInterfaceAddrs(ctx context.Context) []string {
	if !ps.usesDocker() {
		return nil
	}
	if err := ps.learnHost(ctx); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("the self-test does not try the host's own addresses")
		return nil
	}
	addrs := ps.docker.HostAddrs()
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

// subject is what the self-test needs of one bottle: where its agent runs,
// the probe for the agent's platform, where its bundle is, what the checks
// expect.
func (ps *Providers) subject(ctx context.Context, b *bottle.Bottle) verify.Subject {
	if b.Spec.Backend == spec.BackendKubernetes {
		return ps.kubeSubject(ctx, b)
	}
	name := b.Metadata.Name
	s := verify.Subject{Bottle: name}
	if b.Spec.Backend == spec.BackendSmolvm {
		if s.Skip = ps.smolvm.NotVerifiable(ctx); s.Skip != "" {
			return s
		}
	}
	// The bottle's networks and bundle are docker's on every backend.
	addrs, err := ps.docker.Addresses(ctx, name)
	if err != nil {
		s.Err = err
		return s
	}
	s.Target = probe.Target{
		BundleIP: addrs.BundleIP, ProxyPort: bottle.ProxyPort, DNSPort: bottle.DNSPort,
		InternalPorts: []int{bundle.StatusPort},
		Daemons:       b.Spec.Bundle.Daemons, Allow: b.Spec.Bundle.Egress.Allow, AllowCIDRs: b.Network.AllowCIDRs,
		DNSMaxLabelLength: b.Spec.Bundle.Egress.DNS.MaxLabelLength,
	}
	ps.interception(ctx, b, &s.Target)
	for _, a := range []string{addrs.InternalGateway, addrs.EgressGateway} {
		if a != "" {
			s.Target.HostAddrs = append(s.Target.HostAddrs, a)
		}
	}
	switch b.Spec.Backend {
	case spec.BackendSmolvm:
		if err := smolvmAgent(ctx, ps.smolvm, name); err != nil {
			s.Err = err
			return s
		}
		s.Agent = ps.smolvm.Guest(name)
		// A microVM runs on this host's architecture.
		if s.Probe, err = ps.bundles.dir.Path(runtime.GOARCH); err != nil {
			s.Err = fmt.Errorf("the self-test's probe: %w; skip the self-test with --no-verify", err)
			return s
		}
	default:
		if s.Agent, err = ps.docker.Guest(ctx, name, bottle.RoleAgent); err != nil {
			s.Err = err
			return s
		}
		// A container runs on the engine's.
		if s.Probe, err = ps.docker.ProbeBinary(ctx); err != nil {
			s.Err = err
			return s
		}
	}
	// The built-in bundle says when its daemons listen; one made by an
	// older bottle-apply (before an apply replaces it) has been running
	// since then, and may hold another program.
	if b.Spec.Bundle.Image == "" && len(b.Spec.Bundle.Daemons) > 0 && addrs.BundleImage == ps.bundles.ref {
		if s.Bundle, err = ps.docker.Guest(ctx, name, bottle.RoleBundle); err != nil {
			s.Err = err
			return s
		}
		s.ReadyCmd, s.GuardCmd = bundleimage.StatusCmd, bundleimage.GuardCheckCmd
		s.Hint = fmt.Sprintf("; see bottle-apply logs %s and docker logs %s", name, bottle.ResourceName(name, bottle.RoleBundle))
	}
	return s
}

// interception fills in what the interception checks need of a bottle
// with credentials: the credentialed hosts, from the spec (which --verify
// has without reading a secret), and the bottle's CA certificate, the one
// the run resolved or, for --verify, the one apply keeps (ps.keptCA).
// Without a CA that is surely the bundle's, the checks are left out and
// the log says why: a CA made now would fail them for a bundle that works.
func (ps *Providers) interception(ctx context.Context, b *bottle.Bottle, t *probe.Target) {
	hosts := credentialHosts(b)
	if len(hosts) == 0 {
		return
	}
	ca := b.CA
	if ca == nil {
		skip := func(why string, err error) {
			zerolog.Ctx(ctx).Warn().Str("bottle", b.Metadata.Name).Err(err).
				Msg("the self-test does not check that the bundle adds the credentials: " + why)
		}
		if ps.keptCA == nil {
			skip("--verify cannot read the bottle's CA here; the self-test of an apply checks it", nil)
			return
		}
		kept, made, err := ps.keptCA(ctx, b, hosts)
		switch {
		case err != nil:
			skip("the bottle's CA could not be read; an apply makes it anew", err)
			return
		case made || kept == nil:
			skip("no CA is kept for the bottle's credentialed hosts here (another machine, a wiped state directory, changed hosts); an apply makes it anew and replaces the bundle", nil)
			return
		}
		ca = kept
	}
	t.Credentialed, t.CA = hosts, ca.Cert
}

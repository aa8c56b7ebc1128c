package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/probe"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
	"github.com/bottle-apply/bottle-apply/verify"
)

// lockKey names the locks of a run: the docker engine's when the run
// needs it, else the cluster's (its API server and context).
func (ps *Providers) lockKey(ctx context.Context) (string, error) {
	if ps.usesDocker() {
		eng, err := ps.Engine(ctx)
		if err != nil {
			return "", err
		}
		return eng.LockKey(), nil
	}
	return ps.clusterKey()
}

// clusterKey names the cluster: its API server and context.
func (ps *Providers) clusterKey() (string, error) {
	c, err := ps.kube.Cluster()
	if err != nil {
		return "", err
	}
	return "cluster:" + c.Config.Host + "#" + c.Context, nil
}

// engineKey names where bottle b's bundle runs: its cluster on backend
// kubernetes, else the docker engine (whatever else the run uses).
func (ps *Providers) engineKey(ctx context.Context, b *bottle.Bottle) (string, error) {
	if b.Spec.Backend == spec.BackendKubernetes {
		return ps.clusterKey()
	}
	eng, err := ps.Engine(ctx)
	if err != nil {
		return "", err
	}
	return eng.LockKey(), nil
}

// kubeReachWait bounds the self-test's wait for the agent to reach its
// bundle's proxy on a cluster (verify.Subject.AwaitReach).
const kubeReachWait = 30 * time.Second

// DefaultKubeReadyTimeout bounds the wait for a cluster's pods: an image
// pull on a cold node takes a while.
const DefaultKubeReadyTimeout = 3 * time.Minute

// awaitKube waits until the bottles on kubernetes that the run changed
// are ready: the bundle serves and the agent's pod runs. A pod that cannot
// start (an image that cannot be pulled, a crash loop, no node for it)
// fails the apply with the pod's own reason.
func (ps *Providers) awaitKube(ctx context.Context, o *Options, run *reconcile.Result, bottles []bottle.Bottle) error {
	changed := run.Plan.ChangedBottles()
	var names []string
	for _, b := range bottles {
		if b.Spec.Backend == spec.BackendKubernetes && slices.Contains(changed, b.Metadata.Name) {
			names = append(names, b.Metadata.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	within := o.KubeReadyTimeout
	if within <= 0 {
		within = DefaultKubeReadyTimeout
	}
	if err := ps.kube.AwaitReady(ctx, names, within); err != nil {
		return fmt.Errorf("%w\nthe objects are applied; the next run converges from them once the cause is fixed", err)
	}
	return nil
}

// kubeProbeDir is where the self-test copies its probe in an agent on a
// cluster: the copy runs as the agent's user, who may not write at /.
const kubeProbeDir = "/tmp/.bottle-apply"

// kubeSubject is what the self-test needs of a bottle on a cluster: its
// agent and bundle through the API, the probe for the node's
// architecture, the bundle's ClusterIP, and the nodes as the addresses
// the agent must not reach: without NetworkPolicy every pod reaches them.
func (ps *Providers) kubeSubject(ctx context.Context, b *bottle.Bottle) verify.Subject {
	name := b.Metadata.Name
	s := verify.Subject{Bottle: name, ProbeDir: kubeProbeDir}
	t, err := ps.kube.Target(ctx, name)
	if err != nil {
		s.Err = err
		return s
	}
	if s.Agent, err = ps.kube.Guest(ctx, name, bottle.RoleAgent); err != nil {
		s.Err = err
		return s
	}
	if s.Probe, err = ps.bundles.dir.Path(t.Arch); err != nil {
		s.Err = fmt.Errorf("the self-test's probe for the cluster's nodes (%s): %w; skip the self-test with --no-verify", t.Arch, err)
		return s
	}
	s.Target = probe.Target{
		BundleIP: t.BundleIP, ProxyPort: bottle.ProxyPort, DNSPort: bottle.DNSPort,
		Daemons: b.Spec.Bundle.Daemons, Allow: b.Spec.Bundle.Egress.Allow, AllowCIDRs: b.Network.AllowCIDRs,
		DNSMaxLabelLength: b.Spec.Bundle.Egress.DNS.MaxLabelLength,
		Listening:         t.Listening,
	}
	ps.interception(ctx, b, &s.Target)
	// A bundle pod just made is ready before the cluster's network routes
	// the agent to it.
	s.AwaitReach = kubeReachWait
	s.HoleHint = "on kubernetes, an agent that connects to a node's kubelet or to the API server means its NetworkPolicy is not enforced: " +
		"the cluster's network plugin must enforce NetworkPolicy (Calico, Cilium, kube-router do; flannel alone does not)"
	if len(b.Spec.Bundle.Daemons) > 0 {
		if s.Bundle, err = ps.kube.Guest(ctx, name, bottle.RoleBundle); err != nil {
			s.Err = err
			return s
		}
		s.ReadyCmd = bundleimage.StatusCmd
		s.Hint = fmt.Sprintf("; see bottle-apply logs %s", name)
	}
	return s
}

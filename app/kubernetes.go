package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
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
	c, err := ps.kube.Cluster()
	if err != nil {
		return "", err
	}
	return "cluster:" + c.Config.Host + "#" + c.Context, nil
}

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

// Package app holds bottle-apply's use cases: plan, apply, destroy, the
// self-test, exec, copy and logs, with what they share (the providers and
// the engine they talk to, locks, secrets). The command line is flags and
// one call into this package; providers are translation.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/lock"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
	"github.com/bottle-apply/bottle-apply/verify"
)

// Options are what a command line asks of a run.
type Options struct {
	Version          string // bottle-apply's, recorded in a label
	Files            []string
	Destroy          bool
	DryRun           bool
	DetailedExitcode bool
	Output           string
	LogLevel         string
	LogFormat        string
	Timeout          time.Duration
	LockTimeout      time.Duration
	SubnetPool       string
	Verify           bool
	NoVerify         bool
	// Volumes lets a destroy remove the bottles' named volumes too, and a
	// prune those of the bottles it deletes.
	Volumes bool
	// Set is the spec set the bottles are applied with (--set), recorded
	// on their resources; Prune deletes the managed bottles of that set
	// that are not in the specs.
	Set   string
	Prune bool
	// ReadyWait is how long each agent an apply started must stay running
	// (0: no wait).
	ReadyWait time.Duration
	// Kubeconfig is the kubeconfig file of kubernetes bottles ("": as
	// kubectl finds it); KubeContext the context of exec, cp and logs
	// ("": the current one). KubePodCIDRs and KubeServiceCIDRs stand in
	// for the ranges a cluster does not tell.
	Kubeconfig, KubeContext        string
	KubePodCIDRs, KubeServiceCIDRs []string
	// KubeReadyTimeout bounds the wait for a cluster's pods to run.
	KubeReadyTimeout time.Duration
}

// Result is what a run planned, did and found, for a view to show. It is
// never nil, even when the run failed before planning.
type Result struct {
	Command string // apply, destroy or verify
	DryRun  bool
	Bottles []string // the bottles' names, in the specs' order
	// Run is the reconciler's result; nil for --verify and when the run
	// failed before planning.
	Run *reconcile.Result
	// Verify holds the self-test of each bottle tested.
	Verify []verify.Report
	Took   time.Duration
}

// Changed reports whether the run changed (or, in a dry run, would change)
// anything.
func (r *Result) Changed() bool { return r.Run != nil && r.Run.Changed() }

// Apply runs apply, destroy, a dry run or the self-test alone (--verify)
// on the bottles of o.Files (or in, for "-"). onPlan, when set, sees the
// first plan before anything changes.
func Apply(ctx context.Context, o *Options, in io.Reader, onPlan func(*reconcile.Plan)) (*Result, error) {
	started := time.Now()
	res := &Result{Command: "apply", DryRun: o.DryRun}
	switch {
	case o.Destroy:
		res.Command = "destroy"
	case o.Verify:
		res.Command = "verify"
	}
	err := apply(ctx, o, in, onPlan, res)
	res.Took = time.Since(started)
	return res, err
}

func apply(ctx context.Context, o *Options, in io.Reader, onPlan func(*reconcile.Plan), res *Result) error {
	// A destroy needs the bottles' names, not their host directories,
	// which may be gone by now.
	load := spec.Load
	if o.Destroy {
		load = spec.LoadDeclared
	}
	specs, err := load(o.Files, in)
	if err != nil {
		return fmt.Errorf("invalid spec, nothing was changed:\n%w", err)
	}
	if o.Prune && o.Set == "" {
		return errors.New("--prune needs --set: it deletes the bottles of a named spec set only; nothing was changed")
	}
	bottles := bottle.NewAll(specs)
	for i := range bottles {
		bottles[i].Set = o.Set
	}
	if o.Verify {
		for i := range bottles {
			res.Bottles = append(res.Bottles, bottles[i].Metadata.Name)
		}
		ps, err := NewProviders(o)
		if err != nil {
			return err
		}
		if err := ps.use(bottles); err != nil {
			return err
		}
		res.Verify, err = ps.verifyBottles(ctx, bottles)
		return err
	}
	if !o.Destroy {
		// Secrets and files are read now, once, and never shown.
		if err := resolveSecrets(bottles); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
		warnSensitive(ctx, bottles)
	}
	for i := range bottles {
		res.Bottles = append(res.Bottles, bottles[i].Metadata.Name)
	}
	ps, err := NewProviders(o)
	if err != nil {
		return err
	}
	if err := ps.use(bottles); err != nil {
		return err
	}
	if !o.Destroy && ps.usesDocker() {
		if err := ps.checkHostDirs(bottles); err != nil {
			return err
		}
	}
	ropts := reconcile.Options{Destroy: o.Destroy, Volumes: o.Volumes, DryRun: o.DryRun, OnPlan: onPlan}
	if o.Prune {
		ropts.Prune = o.Set
	}
	if !o.DryRun {
		// One apply or destroy per bottle at a time on an engine (or a
		// cluster), whatever the address it is reached by.
		key, err := ps.lockKey(ctx)
		if err != nil {
			return err
		}
		locks, err := lock.Acquire(ctx, xdg.LockDir(key), res.Bottles, o.LockTimeout)
		if err != nil {
			return err
		}
		defer locks.Release()
		// The bottles a prune deletes are known once observed: the run
		// locks them then, and plans again under their locks.
		var pruneLocks []*lock.Set
		defer func() {
			for _, l := range pruneLocks {
				l.Release()
			}
		}()
		ropts.LockPruned = func(ctx context.Context, pruned []string) error {
			more, err := lock.Acquire(ctx, xdg.LockDir(key), pruned, o.LockTimeout)
			if err != nil {
				return fmt.Errorf("lock the bottles to prune: %w; nothing was changed", err)
			}
			pruneLocks = append(pruneLocks, more)
			return nil
		}
	}
	if !o.Destroy {
		// Under the bottles' locks: two runs make one CA, not two.
		if err := ps.resolveCAs(ctx, bottles, !o.DryRun); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
	}
	if !o.Destroy && ps.usesDocker() {
		// The bundles refuse the host's addresses: known from the last run
		// on this engine, or learned now.
		if err := ps.learnHost(ctx); err != nil {
			return err
		}
	}
	run, runErr := reconcile.Run(ctx, ps.all, bottles, ropts)
	res.Run = run
	switch {
	case runErr == nil:
	case errors.Is(runErr, context.DeadlineExceeded):
		return fmt.Errorf("%w\nthe run hit --timeout %s: raise it, or check that the engine answers (docker info); what was done is labelled, and the next run converges from it", runErr, o.Timeout)
	case errors.Is(runErr, context.Canceled):
		return fmt.Errorf("%w\ninterrupted: what was done is labelled, and the next run converges from it", runErr)
	case errors.Is(runErr, reconcile.ErrNotConverged):
		// An agent whose command ends is started again each round: say
		// what it said.
		return errors.Join(runErr, ps.deadAgents(ctx, run, bottles))
	default:
		return runErr
	}
	if !o.DryRun && ps.usesDocker() {
		// Housekeeping: a failure here leaves an image behind, and the
		// apply stands.
		if err := ps.docker.PruneBundleImages(ctx, time.Now()); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("old built-in bundle images were left; the next apply tries again")
		}
	}
	if o.Destroy || o.DryRun || run.Plan == nil {
		return nil
	}
	// A cluster's pods start when the cluster gets to them: the bottles
	// must be ready before the self-test goes in.
	if err := ps.awaitKube(ctx, o, run, bottles); err != nil {
		return err
	}
	// The agents the run started must stay running, which the engine
	// tells while the self-test runs.
	var (
		g                  errgroup.Group
		readyErr, checkErr error
	)
	g.Go(func() error { readyErr = ps.awaitAgents(ctx, o, startedAgents(run, bottles, false)); return nil })
	// A bottle that changed is tested again; one that did not was tested
	// when it last changed (bottle-apply --verify tests it now).
	if changed := changedBottles(bottles, run.Plan.ChangedBottles()); len(changed) > 0 && !o.NoVerify {
		g.Go(func() error { res.Verify, checkErr = ps.verifyBottles(ctx, changed); return nil })
	}
	_ = g.Wait()
	return errors.Join(readyErr, checkErr)
}

// changedBottles returns the bottles that a run changed something of.
func changedBottles(bottles []bottle.Bottle, changed []string) []bottle.Bottle {
	var out []bottle.Bottle
	for _, b := range bottles {
		if slices.Contains(changed, b.Metadata.Name) {
			out = append(out, b)
		}
	}
	return out
}

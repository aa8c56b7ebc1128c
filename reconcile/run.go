package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// DefaultMaxRounds bounds the observe-diff-execute loop.
const DefaultMaxRounds = 5

// DefaultGrace is how long running steps may go on after an interrupt.
const DefaultGrace = 30 * time.Second

// ErrNotConverged is returned when reality still differs from the spec after
// the last round.
var ErrNotConverged = errors.New("did not converge")

// ErrRetry marks a step error that another round may fix, such as a name or
// address conflict with a run that acted concurrently: the next round
// observes what that run made.
var ErrRetry = errors.New("retry after observing again")

// Options tune Run.
type Options struct {
	Destroy bool // desire nothing: delete every managed resource of the bottles
	// Volumes lets a destroy delete persistent resources (named volumes)
	// too; without it they are kept, and Plan.Kept says which.
	Volumes bool
	// Prune names a spec set whose bottles that are not among the run's
	// are deleted (apply --set S --prune); with Volumes, their
	// persistent resources too.
	Prune     string
	DryRun    bool // stop after the first plan
	MaxRounds int  // 0 means DefaultMaxRounds
	// Grace is how long running steps may go on once ctx is done;
	// 0 means DefaultGrace.
	Grace time.Duration
	// OnPlan sees the first plan before anything changes.
	OnPlan func(*Plan)
	// LockPruned, when set, takes the locks of bottles a plan prunes
	// (Plan.Pruned) before any step runs. Their names are known only once
	// observed: Run calls it with those it has not asked for yet, then
	// observes and plans again under the locks, so that nothing is
	// deleted on a plan made before them.
	LockPruned func(ctx context.Context, bottles []string) error
}

// Result says what a run planned and did.
type Result struct {
	Plan      *Plan        // the first plan
	Rounds    int          // execute rounds run
	Steps     []StepResult // every provider call, in order per round
	Converged bool
}

// Changed reports whether the run changed (or, in a dry run, would change)
// anything.
func (r *Result) Changed() bool { return r.Plan != nil && r.Plan.Changes() > 0 }

// Run observes, diffs and executes until nothing is left to do, or the round
// bound is reached. Bottles are not modified.
func Run(ctx context.Context, providers []Provider, bottles []bottle.Bottle, opts Options) (*Result, error) {
	maxRounds := opts.MaxRounds
	if maxRounds <= 0 {
		maxRounds = DefaultMaxRounds
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	byName := make(map[string]Provider, len(providers))
	for _, p := range providers {
		byName[p.Name()] = p
	}
	// A prune observes every managed bottle: the names of the set's
	// bottles that left the specs are unknown. Scope.All keeps it to the
	// same lists.
	scope := Scope{RemovePersistent: opts.Volumes, Prune: opts.Prune, All: opts.Prune != ""}
	locked := map[string]bool{}
	for i := range bottles {
		scope.Bottles = append(scope.Bottles, bottles[i].Metadata.Name)
	}
	log := zerolog.Ctx(ctx)
	res := &Result{}
	var lastErr error // the last error that observing again was to fix
	retries := 0
	// retry waits before observing again after an error another round may
	// fix: a conflict with a concurrent run, an engine that restarts.
	retry := func(err error) (bool, error) {
		if !errors.Is(err, ErrRetry) || retries >= maxRetries || ctx.Err() != nil {
			return false, err
		}
		retries++
		lastErr = err
		wait := retryDelay(retries)
		log.Warn().Err(err).Str("in", wait.String()).Msg("observing again")
		select {
		case <-time.After(wait):
			return true, nil
		case <-ctx.Done():
			return false, fmt.Errorf("apply interrupted: %w", ctx.Err())
		}
	}
	for {
		plan, err := PlanOnce(ctx, providers, bottles, scope, opts.Destroy)
		if err != nil {
			if again, err := retry(err); !again {
				return res, err
			}
			continue
		}
		if res.Plan == nil {
			res.Plan = plan
			for _, w := range plan.Warnings {
				log.Warn().Msg(w)
			}
			if opts.OnPlan != nil {
				opts.OnPlan(plan)
			}
		}
		if plan.Changes() == 0 {
			res.Converged = true
			return res, nil
		}
		if opts.DryRun {
			return res, nil
		}
		if opts.LockPruned != nil {
			var more []string
			for _, b := range plan.Pruned {
				if !locked[b] {
					locked[b] = true
					more = append(more, b)
				}
			}
			if len(more) > 0 {
				if err := opts.LockPruned(ctx, more); err != nil {
					return res, err
				}
				continue
			}
		}
		if res.Rounds == maxRounds {
			err := fmt.Errorf("%w after %d rounds; still to do:\n%s", ErrNotConverged, res.Rounds, remaining(plan))
			if lastErr != nil {
				err = fmt.Errorf("%w\nthe last attempt failed: %w", err, lastErr)
			}
			return res, err
		}
		if res.Rounds > 0 {
			log.Info().Int("round", res.Rounds+1).Int("changes", plan.Changes()).Msg("reality still differs; applying again")
		}
		steps, err := Execute(ctx, plan, byName, grace)
		res.Rounds++
		res.Steps = append(res.Steps, steps...)
		if err != nil {
			if again, err := retry(err); !again {
				return res, err
			}
		}
	}
}

// PlanOnce observes every provider (in parallel), resolves and translates
// the bottles, and diffs.
func PlanOnce(ctx context.Context, providers []Provider, bottles []bottle.Bottle, scope Scope, destroy bool) (*Plan, error) {
	observed, err := ObserveAll(ctx, providers, scope)
	if err != nil {
		return nil, err
	}
	return PlanObserved(providers, bottles, observed, scope, destroy)
}

// ObserveAll observes every provider in parallel: the first half of
// PlanOnce, for a caller that shows what exists as well as the plan
// (status).
func ObserveAll(ctx context.Context, providers []Provider, scope Scope) ([]Resource, error) {
	obs := make([][]Resource, len(providers))
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range providers {
		g.Go(func() error {
			rs, err := p.Observe(gctx, scope)
			if err != nil {
				return fmt.Errorf("observe %s: %w", p.Name(), err)
			}
			obs[i] = rs
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var observed []Resource
	for _, rs := range obs {
		observed = append(observed, rs...)
	}
	return observed, nil
}

// PlanObserved is the second half of PlanOnce: it resolves and translates
// the bottles against what was observed, and diffs. It observes nothing.
func PlanObserved(providers []Provider, bottles []bottle.Bottle, observed []Resource, scope Scope, destroy bool) (*Plan, error) {
	var desired []Resource
	if !destroy {
		bs := make([]*bottle.Bottle, len(bottles))
		for i := range bottles {
			// A copy: what a round resolves must not leak into the next
			// round, which observes again.
			b := bottles[i]
			b.Network.AllowCIDRs = slices.Clone(b.Network.AllowCIDRs)
			bs[i] = &b
		}
		AdoptSets(bs, observed)
		for _, p := range providers {
			if err := p.Resolve(bs, observed); err != nil {
				return nil, err
			}
		}
		for _, p := range providers {
			rs, err := p.Desired(bs, observed)
			if err != nil {
				return nil, err
			}
			desired = append(desired, rs...)
		}
	}
	plan, err := Diff(desired, observed, scope)
	if err == nil && destroy {
		for i := range plan.Steps {
			if plan.Steps[i].Action == Delete && !strings.HasPrefix(plan.Steps[i].Reason, "duplicate") {
				plan.Steps[i].Reason = "destroy"
			}
		}
	}
	return plan, err
}

func remaining(p *Plan) string {
	var b strings.Builder
	for _, s := range p.Steps {
		if s.Action != NoOp {
			fmt.Fprintf(&b, "  %s %s: %s\n", s.Action.Symbol(), s.ResourceID, s.Reason)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// maxRetries bounds how often a run observes again after an error marked
// ErrRetry: with retryDelay, about 30 seconds in all.
const maxRetries = 8

// Retry calls f until it returns nil or an error not marked ErrRetry,
// waiting between calls as Run waits between rounds (about 30 seconds in
// all), and returns f's last error. It is for what a run does before its
// rounds, such as asking the engine who it is: an engine that restarts is
// waited for as long there as in the rounds.
func Retry(ctx context.Context, what string, f func() error) error {
	for n := 1; ; n++ {
		err := f()
		if err == nil || !errors.Is(err, ErrRetry) || n > maxRetries || ctx.Err() != nil {
			return err
		}
		wait := retryDelay(n)
		zerolog.Ctx(ctx).Warn().Err(err).Str("in", wait.String()).Msg(what + ": trying again")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("%s interrupted: %w (the last attempt: %w)", what, ctx.Err(), err)
		}
	}
}

// retryDelay backs off exponentially from 250ms to 4s, with up to 50%
// jitter so that concurrent runs do not collide in lockstep.
func retryDelay(n int) time.Duration {
	d := 125 * time.Millisecond << min(n, 5)
	return d + rand.N(d/2)
}

// AdoptSets gives each bottle applied without a spec set the one its
// managed resources carry, so that what an apply without --set recreates
// keeps the set: no churn, and a prune of the set still knows the bottle.
// A bottle whose resources carry two sets is left without one.
func AdoptSets(bottles []*bottle.Bottle, observed []Resource) {
	sets := map[string][]string{}
	for i := range observed {
		o := &observed[i]
		if o.Managed && o.Set != "" && !slices.Contains(sets[o.Bottle], o.Set) {
			sets[o.Bottle] = append(sets[o.Bottle], o.Set)
		}
	}
	for _, b := range bottles {
		if s := sets[b.Metadata.Name]; b.Set == "" && len(s) == 1 {
			b.Set = s[0]
		}
	}
}

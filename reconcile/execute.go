package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// StepResult records one provider call the executor made.
type StepResult struct {
	Step       int           `json:"step"`
	Action     Action        `json:"action"`
	ResourceID string        `json:"resource"`
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"durationNs"`
	Err        string        `json:"error,omitempty"`
}

// op is one provider call: a Replace is two (delete, then create).
type op struct {
	step   *Step
	action Action // Create, Start or Delete
	deps   []*op
	done   chan struct{} // closed when the call is over, or will not happen
	ok     bool          // the call succeeded; written before done is closed
}

// Execute runs the plan's steps in dependency order, independent ones in
// parallel. After the first error, or once ctx is done, no new call starts;
// calls already running finish, given up to grace after ctx is done. It makes no decisions: every action comes from the plan.
func Execute(ctx context.Context, plan *Plan, providers map[string]Provider, grace time.Duration) ([]StepResult, error) {
	ops, err := buildOps(plan)
	if err != nil {
		return nil, err
	}
	for _, o := range ops {
		if _, ok := providers[o.step.Resource.Provider]; !ok {
			return nil, fmt.Errorf("internal: step #%d: no provider %q", o.step.ID, o.step.Resource.Provider)
		}
	}
	log := zerolog.Ctx(ctx)
	var (
		mu      sync.Mutex
		results []StepResult
	)
	// Running calls get their own context: when ctx is done (interrupt,
	// --timeout) no new step starts, but a call already running gets the
	// grace period to finish, so that the engine is not left half-way
	// through a create that nothing labels or observes yet.
	ioCtx, ioCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer ioCancel()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(grace, ioCancel) })
	defer stopGrace()
	g, gctx := errgroup.WithContext(ctx)
	for _, o := range ops {
		g.Go(func() error {
			defer close(o.done)
			for _, d := range o.deps {
				select {
				case <-d.done:
					if !d.ok {
						return nil // it failed or never ran: nothing built on it runs
					}
				case <-gctx.Done():
					return nil
				}
			}
			if gctx.Err() != nil {
				return nil
			}
			// For a Delete, Observed is what goes; Resource stays the desired
			// form when the delete is the first half of a Replace, so that a
			// provider can make sure the replacement can be made (its image
			// is there) before it removes anything.
			s := *o.step
			s.Action = o.action
			l := log.With().Int("step", s.ID).Str("action", o.action.String()).
				Str("resource", s.ResourceID).Str("bottle", s.Resource.Bottle).Logger()
			l.Info().Str("reason", o.step.Reason).Msg(lower(o.action) + " " + s.ResourceID)
			t0 := time.Now()
			// A running call gets the caller's context, not the group's: a
			// sibling's failure stops new steps but lets this one finish, so
			// the engine is never left half-way through a create that the
			// next round cannot see yet.
			err := providers[s.Resource.Provider].Apply(l.WithContext(ioCtx), s)
			r := StepResult{Step: s.ID, Action: o.action, ResourceID: s.ResourceID, Started: t0, Duration: time.Since(t0)}
			if err != nil {
				r.Err = err.Error()
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
			if err != nil {
				return fmt.Errorf("step #%d: %s %s: %w", s.ID, lower(o.action), s.ResourceID, err)
			}
			l.Info().Str("took", r.Duration.Round(time.Millisecond).String()).Msg(pastTense[o.action] + " " + s.ResourceID)
			o.ok = true
			return nil
		})
	}
	err = g.Wait()
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("apply interrupted: %w", ctx.Err())
	}
	slices.SortFunc(results, func(a, b StepResult) int { return a.Step - b.Step })
	return results, err
}

var pastTense = map[Action]string{Create: "created", Start: "started", Delete: "deleted"}

func lower(a Action) string {
	b, _ := a.MarshalText()
	return string(b)
}

// buildOps turns steps into provider calls with their ordering edges:
//   - a resource's create waits for its own delete (Replace) and for the
//     creates of what it depends on;
//   - a resource's delete waits for the deletes of what depends on it.
func buildOps(plan *Plan) ([]*op, error) {
	creates := map[string]*op{}
	deletes := map[string][]*op{}
	var ops []*op
	for i := range plan.Steps {
		s := &plan.Steps[i]
		var del, cre *op
		switch s.Action {
		case NoOp:
			continue
		case Delete:
			del = &op{step: s, action: Delete}
		case Replace:
			del = &op{step: s, action: Delete}
			cre = &op{step: s, action: Create}
		case Create, Start:
			cre = &op{step: s, action: s.Action}
		default:
			return nil, fmt.Errorf("internal: step #%d has action %v", s.ID, s.Action)
		}
		if del != nil {
			ops = append(ops, del)
			deletes[s.Resource.ID()] = append(deletes[s.Resource.ID()], del)
		}
		if cre != nil {
			if del != nil {
				cre.deps = append(cre.deps, del)
			}
			ops = append(ops, cre)
			creates[s.ResourceID] = cre
		}
	}
	// dependents: resource ID -> delete ops of resources depending on it.
	dependents := map[string][]*op{}
	for _, o := range ops {
		if o.action != Delete {
			continue
		}
		deps := slices.Clone(o.step.Resource.DependsOn)
		if o.step.Observed != nil {
			deps = append(deps, o.step.Observed.DependsOn...)
		}
		slices.Sort(deps)
		for _, d := range slices.Compact(deps) {
			dependents[d] = append(dependents[d], o)
		}
	}
	// A bottle's creates also wait for all of its deletes: a pinned address
	// or a name may still be held by what is going away.
	bottleDeletes := map[string][]*op{}
	for _, o := range ops {
		if o.action == Delete {
			b := o.step.Resource.Bottle
			bottleDeletes[b] = append(bottleDeletes[b], o)
		}
	}
	for _, o := range ops {
		s := o.step
		switch o.action {
		case Create, Start:
			for _, dep := range s.Resource.DependsOn {
				if p, ok := creates[dep]; ok {
					o.deps = append(o.deps, p)
				}
			}
			for _, d := range bottleDeletes[s.Resource.Bottle] {
				if d.step != s {
					o.deps = append(o.deps, d)
				}
			}
		case Delete:
			// Everything whose current form depends on this resource goes
			// first.
			for _, other := range dependents[s.Resource.ID()] {
				if other != o {
					o.deps = append(o.deps, other)
				}
			}
		}
	}
	for _, o := range ops {
		o.done = make(chan struct{})
	}
	return ops, nil
}

package reconcile

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// memProvider keeps resources in memory: Apply changes what Observe sees.
// stuck names resources that never leave the stopped state.
type memProvider struct {
	mu       sync.Mutex
	desired  []Resource
	have     map[string]Resource
	stuck    map[string]bool
	conflict int // Create calls that fail with ErrRetry first
	applied  []string
	observes int
}

func (m *memProvider) Name() string { return "docker" }

func (m *memProvider) Resolve([]*bottle.Bottle, []Resource) error { return nil }

func (m *memProvider) Desired([]*bottle.Bottle, []Resource) ([]Resource, error) {
	return m.desired, nil
}

func (m *memProvider) Observe(context.Context, Scope) ([]Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.observes++
	var out []Resource
	for _, r := range m.have {
		out = append(out, r)
	}
	return out, nil
}

func (m *memProvider) Apply(_ context.Context, s Step) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied = append(m.applied, s.Action.String()+" "+s.ResourceID)
	id := s.Resource.ID()
	switch s.Action {
	case Delete:
		delete(m.have, id)
	case Create, Start:
		if s.Action == Create && m.conflict > 0 {
			m.conflict--
			return errors.Join(errors.New("name in use"), ErrRetry)
		}
		r := s.Resource
		r.Managed, r.EngineID, r.State = true, r.Name+"-id", StateRunning
		if m.stuck[id] {
			r.State, r.Status = StateStopped, "Exited (1) just now"
		}
		r.Attached = map[string]string{}
		for _, p := range r.BoundTo {
			r.Attached[p] = m.have[p].EngineID
		}
		m.have[id] = r
	}
	return nil
}

func bottles(names ...string) []bottle.Bottle {
	var out []bottle.Bottle
	for _, n := range names {
		out = append(out, bottle.New(spec.Bottle{Metadata: spec.Metadata{Name: n}}))
	}
	return out
}

func TestRunConvergesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	m := &memProvider{desired: hello.desired(), have: map[string]Resource{}}
	var plans []string
	res, err := Run(t.Context(), []Provider{m}, bottles("hello"), Options{OnPlan: func(p *Plan) { plans = append(plans, p.String()) }})
	if err != nil || !res.Converged || res.Rounds != 1 || len(res.Steps) != 4 || len(plans) != 1 {
		t.Fatalf("first run: %+v, %v, %d plans", res, err, len(plans))
	}
	m.applied = nil
	res, err = Run(t.Context(), []Provider{m}, bottles("hello"), Options{})
	if err != nil || res.Changed() || res.Rounds != 0 || len(m.applied) != 0 {
		t.Fatalf("second run changed things: %+v %v %q", res, err, m.applied)
	}
	res, err = Run(t.Context(), []Provider{m}, bottles("hello"), Options{Destroy: true})
	if err != nil || res.Plan.Count(Delete) != 4 || len(m.have) != 0 {
		t.Fatalf("destroy: %+v %v, left %d", res, err, len(m.have))
	}
	for _, s := range res.Plan.Steps {
		if s.Reason != "destroy" {
			t.Errorf("destroy step %s has reason %q", s.ResourceID, s.Reason)
		}
	}
}

func TestRunDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	m := &memProvider{desired: hello.desired(), have: map[string]Resource{}}
	res, err := Run(t.Context(), []Provider{m}, bottles("hello"), Options{DryRun: true})
	if err != nil || !res.Changed() || res.Converged || len(m.applied) != 0 || m.observes != 1 {
		t.Fatalf("dry run: %+v %v, applied %q", res, err, m.applied)
	}
}

func TestRunSaysWhatDoesNotConverge(t *testing.T) {
	t.Parallel()
	m := &memProvider{desired: hello.desired(), have: map[string]Resource{},
		stuck: map[string]bool{"docker-container:hello/agent": true}}
	_, err := Run(t.Context(), []Provider{m}, bottles("hello"), Options{MaxRounds: 3})
	if !errors.Is(err, ErrNotConverged) {
		t.Fatalf("Run error = %v, want ErrNotConverged", err)
	}
	want := "did not converge after 3 rounds; still to do:\n  ~ docker-container:hello/agent: stopped (Exited (1) just now)"
	if err.Error() != want {
		t.Fatalf("Run error =\n%v\nwant\n%v", err, want)
	}
	if m.observes != 4 {
		t.Fatalf("observed %d times, want 4 (3 rounds and the last check)", m.observes)
	}
}

func TestRunRetriesConflictsByObservingAgain(t *testing.T) {
	t.Parallel()
	m := &memProvider{desired: hello.desired(), have: map[string]Resource{}, conflict: 1}
	res, err := Run(t.Context(), []Provider{m}, bottles("hello"), Options{})
	if err != nil || !res.Converged || res.Rounds != 2 {
		t.Fatalf("Run: %+v %v", res, err)
	}
}

func TestRunStopsOnOtherErrors(t *testing.T) {
	t.Parallel()
	m := &memProvider{desired: hello.desired(), have: map[string]Resource{}}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Run(ctx, []Provider{m}, bottles("hello"), Options{})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Run error = %v", err)
	}
}

func TestRunSaysWhyRetriesFailed(t *testing.T) {
	t.Parallel()
	m := &memProvider{desired: hello.desired(), have: map[string]Resource{}, conflict: 100}
	_, err := Run(t.Context(), []Provider{m}, bottles("hello"), Options{MaxRounds: 2})
	if !errors.Is(err, ErrNotConverged) || !errors.Is(err, ErrRetry) || !strings.Contains(err.Error(), "the last attempt failed: step #") ||
		!strings.Contains(err.Error(), "name in use") {
		t.Fatalf("Run error = %v", err)
	}
}

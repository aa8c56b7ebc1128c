package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// inSet returns rs with every resource of the spec set s.
func inSet(s string, rs []Resource) []Resource {
	out := slices.Clone(rs)
	for i := range out {
		out[i].Set = s
	}
	return out
}

func TestDiffPrune(t *testing.T) {
	t.Parallel()
	gone := world{bottle: "gone", subnet: "10.0.1", env: "g", bundle: "none"}
	other := world{bottle: "other", subnet: "10.0.2", env: "o", bundle: "none"}
	plain := world{bottle: "plain", subnet: "10.0.3", env: "p", bundle: "none"}
	goneApplied := inSet("a", observedVolumes(gone.withVolumes("work")))
	helloApplied := inSet("a", observedVolumes(hello.withVolumes("work")))
	helloDesired := inSet("a", hello.withVolumes("work"))
	helloNoOp := "#1 docker-network:hello/egress NoOp\n" +
		"#2 docker-network:hello/internal NoOp\n" +
		"#3 docker-volume:hello/work NoOp\n" +
		"#4 docker-container:hello/agent NoOp, after #2 #3\n" +
		"#5 docker-container:hello/bundle NoOp, after #1 #2\n"
	goneDeleted := "#6 docker-container:gone/agent Delete, not in spec set a\n" +
		"#7 docker-container:gone/bundle Delete, not in spec set a\n" +
		"#8 docker-network:gone/egress Delete, not in spec set a, after #7\n" +
		"#9 docker-network:gone/internal Delete, not in spec set a, after #6 #7\n"
	cat := func(rss ...[]Resource) []Resource { return slices.Concat(rss...) }
	cases := []struct {
		name             string
		observed         []Resource
		prune            string
		removePersistent bool
		want             string
		kept             []string
		warnings         []string
	}{
		{name: "a bottle dropped from the set is pruned, its volume kept",
			observed: cat(helloApplied, goneApplied), prune: "a",
			want: helloNoOp + goneDeleted, kept: []string{"docker-volume:gone/work"}},
		{name: "with --volumes its volume goes too, after its agent",
			observed: cat(helloApplied, goneApplied), prune: "a", removePersistent: true,
			want: helloNoOp + goneDeleted + "#10 docker-volume:gone/work Delete, not in spec set a, after #6\n"},
		{name: "without --prune nothing outside the specs is touched",
			observed: cat(helloApplied, goneApplied), removePersistent: true, want: helloNoOp},
		{name: "another set, no set and unmanaged resources are left alone",
			observed: cat(helloApplied, inSet("b", other.observed()), plain.observed(),
				[]Resource{{Provider: "docker", Kind: "container", Name: "bottle-gone-agent", EngineID: "by-hand"},
					{Provider: "docker", Kind: "container", Bottle: "gone", Role: "agent", Name: "x", EngineID: "labelled-by-hand", Set: "a"}}),
			prune: "a", removePersistent: true, want: helloNoOp},
		{name: "a bottle with resources of two sets is left alone",
			observed: cat(helloApplied, with(goneApplied, "agent", func(r *Resource) { r.Set = "b" })), prune: "a", removePersistent: true,
			want:     helloNoOp,
			warnings: []string{`bottle "gone" is not in the specs but its resources are of spec sets a, b: not pruned; destroy it by name if it is no longer wanted`}},
		{name: "resources of a set bottle that carry no set go with it",
			observed: cat(helloApplied, with(goneApplied, "egress", func(r *Resource) { r.Set = "" })), prune: "a",
			want: helloNoOp + goneDeleted, kept: []string{"docker-volume:gone/work"}},
		{name: "a volume left of a destroyed bottle of the set goes with --volumes",
			observed: cat(helloApplied, without(without(without(without(goneApplied, "agent"), "bundle"), "egress"), "internal")), prune: "a", removePersistent: true,
			want: helloNoOp + "#6 docker-volume:gone/work Delete, not in spec set a\n"},
		{name: "a volume dropped from a bottle that stays is kept even with --volumes",
			observed: cat(helloApplied, inSet("a", []Resource{hello.volume("cache")})), prune: "a", removePersistent: true,
			want: helloNoOp, kept: []string{"docker-volume:hello/cache"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for i := range tc.observed {
				tc.observed[i].Managed = tc.observed[i].Managed || tc.observed[i].Bottle != "" && tc.observed[i].EngineID != "labelled-by-hand"
			}
			plan, err := Diff(helloDesired, tc.observed, Scope{Bottles: []string{"hello"}, Prune: tc.prune, RemovePersistent: tc.removePersistent})
			if err != nil {
				t.Fatal(err)
			}
			if got := plan.String(); got != tc.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tc.want)
			}
			var kept []string
			for _, r := range plan.Kept {
				kept = append(kept, r.ID())
			}
			if !slices.Equal(kept, tc.kept) {
				t.Errorf("kept %q, want %q", kept, tc.kept)
			}
			if !slices.Equal(plan.Warnings, tc.warnings) {
				t.Errorf("warnings %q, want %q", plan.Warnings, tc.warnings)
			}
		})
	}
}

func TestDiffSetOfExistingBottles(t *testing.T) {
	t.Parallel()
	two := world{bottle: "two", subnet: "10.0.2", env: "t", bundle: "none"}
	changedEnv := hello
	changedEnv.env = "e2"
	cases := []struct {
		name              string
		desired, observed []Resource
		wantErr           string // a part of the error, wrapping ErrOtherSet
		want              string // a line of the plan
		warnings          []string
	}{
		{name: "a set given to bottles made without one is a warning",
			desired: inSet("a", append(hello.desired(), two.desired()...)), observed: append(hello.observed(), two.observed()...),
			want: "#3 docker-container:hello/agent NoOp, after #2\n",
			warnings: []string{"bottles hello, two carry no spec set yet (what exists cannot be relabelled): " +
				"a prune of a will not remove them until they are recreated, e.g. by destroy and apply --set a"}},
		{name: "a bottle that gets its set on a recreated resource is no warning",
			desired: inSet("a", changedEnv.desired()), observed: hello.observed(),
			want: "#3 docker-container:hello/agent Replace, env changed, after #2\n"},
		{name: "the same set is no change",
			desired: inSet("a", hello.desired()), observed: inSet("a", hello.observed()),
			want: "#3 docker-container:hello/agent NoOp, after #2\n"},
		{name: "the set is in no hash: applying without one changes nothing",
			desired: hello.desired(), observed: inSet("a", hello.observed()),
			want: "#3 docker-container:hello/agent NoOp, after #2\n"},
		{name: "a bottle of another set is refused",
			desired: inSet("b", hello.desired()), observed: inSet("a", hello.observed()),
			wantErr: `bottle "hello" is applied with --set b but its resources are of spec set "a": bottle belongs to another spec set; a prune of a would delete it`},
		{name: "a volume of another set is no refusal: it is never replaced",
			desired:  inSet("b", hello.withVolumes("work")),
			observed: append(inSet("b", observedVolumes(hello.desired())), inSet("a", observedVolumes([]Resource{hello.volume("work")}))...),
			want:     "#3 docker-volume:hello/work NoOp\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plan, err := Diff(tc.desired, tc.observed, Scope{Bottles: []string{"hello", "two"}})
			if tc.wantErr != "" {
				if !errors.Is(err, ErrOtherSet) || !strings.Contains(err.Error(), tc.wantErr) || strings.Count(err.Error(), "\n") != 0 {
					t.Fatalf("Diff error = %v, want one wrapping ErrOtherSet with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan.String(), tc.want) {
				t.Errorf("plan:\n%s\nwant a line\n%s", plan, tc.want)
			}
			if !slices.Equal(plan.Warnings, tc.warnings) {
				t.Errorf("warnings %q, want %q", plan.Warnings, tc.warnings)
			}
		})
	}
}

func TestAdoptSets(t *testing.T) {
	t.Parallel()
	mk := func(name, set string) *bottle.Bottle {
		b := bottle.New(spec.Bottle{Metadata: spec.Metadata{Name: name}})
		b.Set = set
		return &b
	}
	observed := slices.Concat(inSet("a", hello.observed()),
		inSet("b", world{bottle: "given"}.observed()),
		with(inSet("a", world{bottle: "mixed"}.observed()), "agent", func(r *Resource) { r.Set = "b" }),
		world{bottle: "none"}.observed(),
		[]Resource{{Provider: "docker", Kind: "container", Bottle: "foreign", Set: "a"}})
	bs := []*bottle.Bottle{mk("hello", ""), mk("given", "c"), mk("mixed", ""), mk("none", ""), mk("foreign", "")}
	AdoptSets(bs, observed)
	want := []string{"a", "c", "", "", ""}
	for i, b := range bs {
		if b.Set != want[i] {
			t.Errorf("bottle %s: set %q, want %q", b.Metadata.Name, b.Set, want[i])
		}
	}
}

// scopeProvider records the scopes it is asked to observe.
type scopeProvider struct {
	*memProvider
	scopes []Scope
}

func (s *scopeProvider) Observe(ctx context.Context, scope Scope) ([]Resource, error) {
	s.scopes = append(s.scopes, scope)
	return s.memProvider.Observe(ctx, scope)
}

func TestRunPrune(t *testing.T) {
	t.Parallel()
	gone := world{bottle: "gone", subnet: "10.0.1", env: "g", bundle: "none"}
	setup := func() *scopeProvider {
		m := &memProvider{desired: inSet("a", hello.desired()), have: map[string]Resource{}}
		for _, r := range inSet("a", append(hello.observed(), gone.observed()...)) {
			m.have[r.ID()] = r
		}
		return &scopeProvider{memProvider: m}
	}
	t.Run("locks the pruned bottles, then plans again under the locks", func(t *testing.T) {
		t.Parallel()
		p := setup()
		type call struct {
			bottles           []string
			applied, observes int
		}
		var calls []call
		lockPruned := func(_ context.Context, bs []string) error {
			calls = append(calls, call{bs, len(p.applied), p.observes})
			return nil
		}
		res, err := Run(t.Context(), []Provider{p}, bottles("hello"), Options{Prune: "a", LockPruned: lockPruned})
		if err != nil || !res.Converged {
			t.Fatalf("Run: %v, converged %v", err, res.Converged)
		}
		if len(calls) != 1 || !slices.Equal(calls[0].bottles, []string{"gone"}) || calls[0].applied != 0 || calls[0].observes != 1 {
			t.Fatalf("LockPruned calls %+v, want one for gone, after one observation and before any step", calls)
		}
		if p.observes != 3 { // the plan, again under the locks, and after the round
			t.Errorf("observed %d times, want 3", p.observes)
		}
		for id := range p.have {
			if !strings.Contains(id, ":hello/") {
				t.Errorf("%s is left", id)
			}
		}
		if len(p.have) != 4 || !slices.Equal(res.Plan.Pruned, []string{"gone"}) {
			t.Errorf("left %d resources, plan pruned %q; want hello's 4 and gone pruned", len(p.have), res.Plan.Pruned)
		}
		for _, s := range p.scopes {
			if !s.All || s.Prune != "a" {
				t.Errorf("observed with scope %+v, want All and Prune a", s)
			}
		}
	})
	t.Run("a lock not taken changes nothing", func(t *testing.T) {
		t.Parallel()
		p := setup()
		busy := errors.New("bottle gone is busy")
		_, err := Run(t.Context(), []Provider{p}, bottles("hello"), Options{Prune: "a",
			LockPruned: func(context.Context, []string) error { return busy }})
		if !errors.Is(err, busy) || len(p.applied) != 0 {
			t.Fatalf("Run error %v, applied %q; want the lock's error and nothing applied", err, p.applied)
		}
	})
	t.Run("without a prune the observation is the bottles'", func(t *testing.T) {
		t.Parallel()
		p := setup()
		if _, err := Run(t.Context(), []Provider{p}, bottles("hello"), Options{}); err != nil {
			t.Fatal(err)
		}
		if len(p.have) != 8 || p.scopes[0].All {
			t.Errorf("left %d resources (want 8), scope %+v", len(p.have), p.scopes[0])
		}
	})
}

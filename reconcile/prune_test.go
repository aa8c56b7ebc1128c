package reconcile

import (
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
			desired: inSet("b", hello.withVolumes("work")),
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

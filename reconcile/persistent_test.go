package reconcile

import (
	"slices"
	"testing"
)

// volume is a named volume of w's bottle that its agent depends on.
func (w world) volume(name string) Resource {
	return Resource{Provider: "docker", Kind: "volume", Bottle: w.bottle, Role: name, Name: "bottle-" + w.bottle + "-" + name,
		Hash: "volume=" + name, Inputs: map[string]string{"volume": name}, Persistent: true}
}

// withVolumes returns w's desired resources with volumes the agent depends on.
func (w world) withVolumes(names ...string) []Resource {
	rs := w.desired()
	for _, n := range names {
		v := w.volume(n)
		rs = with(rs, "agent", func(r *Resource) { r.DependsOn = append(slices.Clone(r.DependsOn), v.ID()) })
		rs = append(rs, v)
	}
	return rs
}

// observedVolumes is what applying withVolumes produced.
func observedVolumes(rs []Resource) []Resource {
	out := make([]Resource, len(rs))
	for i, r := range rs {
		r.Managed, r.EngineID = true, r.Name+"-id"
		r.State = StatePresent
		if r.Kind == "container" {
			r.State = StateRunning
			r.Attached = map[string]string{}
			for _, p := range r.BoundTo {
				for _, n := range rs {
					if n.ID() == p {
						r.Attached[p] = n.Name + "-id"
					}
				}
			}
		}
		out[i] = r
	}
	return out
}

func TestDiffPersistent(t *testing.T) {
	t.Parallel()
	applied := observedVolumes(hello.withVolumes("work", "cache"))
	changedEnv := hello
	changedEnv.env = "e2"
	cases := []struct {
		name              string
		desired, observed []Resource
		removePersistent  bool
		want              string // the plan's lines
		kept              []string
	}{
		{"first apply creates volumes before the agent", hello.withVolumes("work"), nil, false,
			"#1 docker-network:hello/egress Create, not found\n" +
				"#2 docker-network:hello/internal Create, not found\n" +
				"#3 docker-volume:hello/work Create, not found\n" +
				"#4 docker-container:hello/agent Create, not found, after #2 #3\n" +
				"#5 docker-container:hello/bundle Create, not found, after #1 #2\n", nil},
		{"an agent replace leaves its volumes alone", changedEnv.withVolumes("work", "cache"), applied, false,
			"#1 docker-network:hello/egress NoOp\n" +
				"#2 docker-network:hello/internal NoOp\n" +
				"#3 docker-volume:hello/cache NoOp\n" +
				"#4 docker-volume:hello/work NoOp\n" +
				"#5 docker-container:hello/agent Replace, env changed, after #2 #3 #4\n" +
				"#6 docker-container:hello/bundle NoOp, after #1 #2\n", nil},
		{"a volume whose labels differ is never replaced", hello.withVolumes("work", "cache"),
			with(applied, "work", func(r *Resource) { r.Hash, r.Inputs = "old", map[string]string{"volume": "old"} }), false,
			"#1 docker-network:hello/egress NoOp\n" +
				"#2 docker-network:hello/internal NoOp\n" +
				"#3 docker-volume:hello/cache NoOp\n" +
				"#4 docker-volume:hello/work NoOp\n" +
				"#5 docker-container:hello/agent NoOp, after #2 #3 #4\n" +
				"#6 docker-container:hello/bundle NoOp, after #1 #2\n", nil},
		{"a volume dropped from the spec is kept", hello.withVolumes("work"), applied, false,
			"#1 docker-network:hello/egress NoOp\n" +
				"#2 docker-network:hello/internal NoOp\n" +
				"#3 docker-volume:hello/work NoOp\n" +
				"#4 docker-container:hello/agent NoOp, after #2 #3\n" +
				"#5 docker-container:hello/bundle NoOp, after #1 #2\n",
			[]string{"docker-volume:hello/cache"}},
		{"destroy keeps volumes", nil, applied, false,
			"#1 docker-container:hello/agent Delete, not in spec\n" +
				"#2 docker-container:hello/bundle Delete, not in spec\n" +
				"#3 docker-network:hello/egress Delete, not in spec, after #2\n" +
				"#4 docker-network:hello/internal Delete, not in spec, after #1 #2\n",
			[]string{"docker-volume:hello/cache", "docker-volume:hello/work"}},
		{"destroy --volumes removes them after the agent", nil, applied, true,
			"#1 docker-container:hello/agent Delete, not in spec\n" +
				"#2 docker-container:hello/bundle Delete, not in spec\n" +
				"#3 docker-network:hello/egress Delete, not in spec, after #2\n" +
				"#4 docker-network:hello/internal Delete, not in spec, after #1 #2\n" +
				"#5 docker-volume:hello/cache Delete, not in spec, after #1\n" +
				"#6 docker-volume:hello/work Delete, not in spec, after #1\n", nil},
		{"another bottle's volumes are not touched", nil, observedVolumes(world{bottle: "other", subnet: "10.0.1", env: "e", bundle: "none"}.withVolumes("work")), true,
			"", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plan, err := Diff(tc.desired, tc.observed, Scope{Bottles: []string{"hello"}, RemovePersistent: tc.removePersistent})
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
		})
	}
}

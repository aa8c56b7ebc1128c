package reconcile

import (
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with testdata/NAME.golden, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// A bottle in the shape of the docker backend: two networks, a bundle bound
// to both, an agent bound to the internal one.
type world struct {
	bottle              string
	subnet, env, bundle string
	backend             string
}

func (w world) desired() []Resource {
	b := w.bottle
	internal := Resource{Provider: "docker", Kind: "network", Bottle: b, Role: "internal", Name: "bottle-" + b + "-internal",
		Inputs: map[string]string{"subnet": w.subnet}, Summary: map[string]string{"subnet": w.subnet}}
	egress := Resource{Provider: "docker", Kind: "network", Bottle: b, Role: "egress", Name: "bottle-" + b + "-egress",
		Inputs: map[string]string{"internal": "false"}}
	bundle := Resource{Provider: "docker", Kind: "container", Bottle: b, Role: "bundle", Name: "bottle-" + b + "-bundle",
		Inputs:    map[string]string{"daemons": w.bundle, "ip": w.subnet + ".2"},
		DependsOn: []string{internal.ID(), egress.ID()}, BoundTo: []string{internal.ID(), egress.ID()}}
	agent := Resource{Provider: "docker", Kind: "container", Bottle: b, Role: "agent", Name: "bottle-" + b + "-agent",
		Inputs:    map[string]string{"env": w.env, "bundle": w.bundle},
		DependsOn: []string{internal.ID()}, BoundTo: []string{internal.ID()}}
	out := []Resource{internal, egress, bundle, agent}
	for i := range out {
		out[i].Hash = hashOf(out[i].Inputs)
	}
	return out
}

func hashOf(in map[string]string) string {
	var b strings.Builder
	for _, k := range []string{"bundle", "daemons", "env", "internal", "ip", "subnet"} {
		b.WriteString(k + "=" + in[k] + ";")
	}
	return b.String()
}

// observed returns what applying w produced: everything running, attached.
func (w world) observed() []Resource {
	rs := w.desired()
	for i := range rs {
		r := &rs[i]
		r.Managed = true
		r.EngineID = r.Name + "-id"
		r.State = StateRunning
		if r.Kind == "network" {
			r.State = StatePresent
		}
		r.Attached = map[string]string{}
		for _, p := range r.BoundTo {
			r.Attached[p] = strings.Replace(strings.Replace(p, "docker-network:"+w.bottle+"/", "bottle-"+w.bottle+"-", 1), "", "", 0) + "-id"
		}
		r.Config = nil
	}
	return rs
}

var hello = world{bottle: "hello", subnet: "10.0.0", env: "e1", bundle: "none"}

func without(rs []Resource, role string) []Resource {
	var out []Resource
	for _, r := range rs {
		if r.Role != role {
			out = append(out, r)
		}
	}
	return out
}

func with(rs []Resource, role string, f func(*Resource)) []Resource {
	out := append([]Resource(nil), rs...)
	for i := range out {
		if out[i].Role == role {
			f(&out[i])
		}
	}
	return out
}

// addDefaults gives r one more input, "defaults", which changes its hash.
func addDefaults(r *Resource) {
	r.Inputs = maps.Clone(r.Inputs)
	r.Inputs["defaults"] = "1"
	r.Hash = hashOf(r.Inputs) + "defaults=1;"
}

func TestDiff(t *testing.T) {
	t.Parallel()
	changed := func(w world, f func(*world)) world { f(&w); return w }
	other := world{bottle: "other", subnet: "10.0.1", env: "x", bundle: "none"}
	cases := []struct {
		name              string
		desired, observed []Resource
		scope             []string
	}{
		{name: "from-nothing", desired: hello.desired()},
		{name: "converged", desired: hello.desired(), observed: hello.observed()},
		{name: "bundle-deleted", desired: hello.desired(), observed: without(hello.observed(), "bundle")},
		{name: "agent-stopped", desired: hello.desired(), observed: with(hello.observed(), "agent", func(r *Resource) {
			r.State, r.Status = StateStopped, "Exited (137) 2 seconds ago"
		})},
		{name: "agent-failed", desired: hello.desired(), observed: with(hello.observed(), "agent", func(r *Resource) {
			r.State, r.Status = StateFailed, "Dead"
		})},
		{name: "env-changed", desired: changed(hello, func(w *world) { w.env = "e2" }).desired(), observed: hello.observed()},
		{name: "bundle-settings-changed", desired: changed(hello, func(w *world) { w.bundle = "egress" }).desired(), observed: hello.observed()},
		// An input that a new version adds to the containers, as the
		// providers' "defaults": what the old version made lacks it, and
		// the plan names it.
		{name: "input-added", desired: with(with(hello.desired(), "agent", addDefaults), "bundle", addDefaults), observed: hello.observed()},
		{name: "subnet-changed", desired: changed(hello, func(w *world) { w.subnet = "10.0.9" }).desired(), observed: hello.observed()},
		{name: "network-recreated-by-hand", desired: hello.desired(), observed: with(hello.observed(), "internal", func(r *Resource) {
			r.EngineID = "new-id"
		})},
		{name: "destroy", observed: hello.observed()},
		{name: "destroy-ignores-other-bottles", observed: append(hello.observed(), other.observed()...)},
		{name: "no-longer-desired", desired: without(hello.desired(), "agent"), observed: hello.observed()},
		{name: "duplicate-network", desired: hello.desired(), observed: append(hello.observed(), with(hello.observed()[:1], "internal", func(r *Resource) {
			r.EngineID = "zz-duplicate-id"
		})...)},
		{name: "two-bottles", desired: append(hello.desired(), other.desired()...), observed: other.observed(), scope: []string{"hello", "other"}},
		{name: "foreign-resources-ignored", desired: hello.desired(), observed: append(hello.observed(),
			Resource{Provider: "docker", Kind: "network", Name: "bridge", EngineID: "b"},
			Resource{Provider: "docker", Kind: "container", Bottle: "hello", Role: "agent", Name: "by-hand", EngineID: "c"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scope := Scope{Bottles: tc.scope}
			if scope.Bottles == nil {
				scope.Bottles = []string{"hello"}
			}
			plan, err := Diff(tc.desired, tc.observed, scope)
			if err != nil {
				t.Fatalf("Diff: %v", err)
			}
			got := plan.String()
			for _, w := range plan.Warnings {
				got += "warning: " + w + "\n"
			}
			golden(t, "diff-"+tc.name, got)
		})
	}
}

func TestDiffRefusesUnmanagedNamesake(t *testing.T) {
	t.Parallel()
	observed := []Resource{{Provider: "docker", Kind: "network", Name: "bottle-hello-internal", EngineID: "x"}}
	_, err := Diff(hello.desired(), observed, Scope{Bottles: []string{"hello"}})
	if !errors.Is(err, ErrNotManaged) {
		t.Fatalf("Diff error = %v, want ErrNotManaged", err)
	}
	want := `docker network "bottle-hello-internal" (wanted for docker-network:hello/internal): ` +
		`resource exists but is not managed by bottle-apply; remove or rename it, or give the bottle another name`
	if err.Error() != want {
		t.Fatalf("Diff error =\n%v\nwant\n%v", err, want)
	}
}

func TestDiffIsDeterministic(t *testing.T) {
	t.Parallel()
	a := append(hello.desired(), world{bottle: "b2", subnet: "10.0.2", env: "y", bundle: "none"}.desired()...)
	first, err := Diff(a, nil, Scope{Bottles: []string{"hello", "b2"}})
	if err != nil {
		t.Fatal(err)
	}
	rev := make([]Resource, len(a))
	for i := range a {
		rev[len(a)-1-i] = a[i]
	}
	for range 20 {
		p, err := Diff(rev, nil, Scope{Bottles: []string{"b2", "hello"}})
		if err != nil {
			t.Fatal(err)
		}
		if p.String() != first.String() {
			t.Fatalf("plans differ:\n%s\n%s", p, first)
		}
	}
}

func TestDiffRejectsCycle(t *testing.T) {
	t.Parallel()
	a := Resource{Provider: "p", Kind: "k", Bottle: "b", Role: "a", DependsOn: []string{"p-k:b/c"}}
	c := Resource{Provider: "p", Kind: "k", Bottle: "b", Role: "c", DependsOn: []string{"p-k:b/a"}}
	if _, err := Diff([]Resource{a, c}, nil, Scope{Bottles: []string{"b"}}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("Diff = %v, want a cycle error", err)
	}
}

func TestDiffDropsTheSameDuplicateWhateverTheOrder(t *testing.T) {
	t.Parallel()
	dup := with(hello.observed()[:1], "internal", func(r *Resource) { r.EngineID = "aa-older-id" })
	for _, obs := range [][]Resource{append(hello.observed(), dup...), append(dup, hello.observed()...)} {
		p, err := Diff(hello.desired(), obs, Scope{Bottles: []string{"hello"}})
		if err != nil {
			t.Fatal(err)
		}
		last := p.Steps[len(p.Steps)-1]
		// The containers are attached to the original: it stays.
		if last.Action != Delete || last.Observed.EngineID != "aa-older-id" {
			t.Fatalf("dropped %s (%s), want the one nothing is attached to:\n%s", last.ResourceID, last.Observed.EngineID, p)
		}
	}
}

func TestDiffReplacesWhatIsAttachedOutsideTheSpec(t *testing.T) {
	t.Parallel()
	obs := with(hello.observed(), "agent", func(r *Resource) { r.Attached["network bridge"] = "b1" })
	p, err := Diff(hello.desired(), obs, Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "#3 docker-container:hello/agent Replace, also attached to network bridge, after #2\n"
	if !strings.Contains(p.String(), want) {
		t.Fatalf("plan:\n%s\nwant a line\n%s", p, want)
	}
}

func TestDiffKeepsTheDuplicateInUse(t *testing.T) {
	t.Parallel()
	// "aa-newer-id" sorts first, but the containers are on the original.
	dup := with(hello.observed()[:1], "internal", func(r *Resource) { r.EngineID = "aa-newer-id" })
	obs := append(hello.observed(), dup...)
	for i := range obs {
		for k := range obs[i].Attached {
			obs[i].Attached[k] = "bottle-hello-internal-id"
		}
	}
	p, err := Diff(hello.desired(), obs, Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	last := p.Steps[len(p.Steps)-1]
	if last.Action != Delete || last.Observed.EngineID != "aa-newer-id" {
		t.Fatalf("dropped %s (%s), want the one nothing is attached to:\n%s", last.ResourceID, last.Observed.EngineID, p)
	}
}

// Scope.All widens observation only: what the diff owns, and deletes, is
// still the resources of Scope.Bottles.
func TestDiffAllOnlyWidensObservation(t *testing.T) {
	t.Parallel()
	other := world{bottle: "other", subnet: "10.0.1", env: "x", bundle: "none"}
	observed := append(hello.observed(), other.observed()...)
	for _, desired := range [][]Resource{nil, hello.desired()} {
		want, err := Diff(desired, observed, Scope{Bottles: []string{"hello"}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Diff(desired, observed, Scope{Bottles: []string{"hello"}, All: true})
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() || strings.Contains(got.String(), "other") {
			t.Errorf("plan with All:\n%s\nwant, without:\n%s", got, want)
		}
	}
}

// TestDiffImageChanged: an image rebuilt under the same reference replaces
// what runs it, saying both short IDs; an ID that either side does not know
// changes nothing.
func TestDiffImageChanged(t *testing.T) {
	t.Parallel()
	const (
		oldID = "sha256:abcdef1234567890abcdef1234567890abcdef1234567890abcdef1234567890"
		newID = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	)
	cases := []struct {
		name       string
		want, have string // desired and observed image IDs of the agent
		env        string // the agent's env input, desired
		wantAgent  string // the agent's step in Plan.String()
		changes    int
	}{
		{name: "rebuilt", want: newID, have: oldID, env: "e1",
			wantAgent: "#3 docker-container:hello/agent Replace, image changed (sha256:abcdef123456… → sha256:0123456789ab…), after #2\n", changes: 1},
		{name: "rebuilt and env changed", want: newID, have: oldID, env: "e2",
			wantAgent: "#3 docker-container:hello/agent Replace, env changed; image changed (sha256:abcdef123456… → sha256:0123456789ab…), after #2\n", changes: 1},
		{name: "same content", want: oldID, have: oldID, env: "e1", wantAgent: "#3 docker-container:hello/agent NoOp, after #2\n"},
		{name: "not present locally", want: "", have: oldID, env: "e1", wantAgent: "#3 docker-container:hello/agent NoOp, after #2\n"},
		{name: "made before image IDs were observed", want: newID, have: "", env: "e1", wantAgent: "#3 docker-container:hello/agent NoOp, after #2\n"},
		{name: "an ID without an algorithm", want: "0123456789abcdef", have: "fedcba9876543210", env: "e1",
			wantAgent: "#3 docker-container:hello/agent Replace, image changed (fedcba987654… → 0123456789ab…), after #2\n", changes: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := hello
			w.env = tc.env
			desired := with(w.desired(), "agent", func(r *Resource) { r.ImageID = tc.want })
			observed := with(hello.observed(), "agent", func(r *Resource) { r.ImageID = tc.have })
			p, err := Diff(desired, observed, Scope{Bottles: []string{"hello"}})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(p.String(), tc.wantAgent) {
				t.Errorf("plan:\n%s\nwant a line\n%s", p, tc.wantAgent)
			}
			// Only the agent runs the image: nothing else changes.
			if want := 0; tc.wantAgent[len("#3 docker-container:hello/agent "):][:4] == "NoOp" && p.Changes() != want {
				t.Errorf("changes = %d, want %d:\n%s", p.Changes(), want, p)
			}
		})
	}
}

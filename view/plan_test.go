package view

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/bottle-apply/bottle-apply/reconcile"
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

// A bottle in the shape of the docker backend, as reconcile's diff tests
// have it: two networks, a bundle bound to both, an agent bound to the
// internal one.
type world struct {
	bottle              string
	subnet, env, bundle string
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
	bundle.Keeps, bundle.Discards = "the agent as it runs", "open connections"
	agent.Keeps, agent.Discards = "the networks and the bundle", "the agent's files"
	out := []Resource{internal, egress, bundle, agent}
	for i := range out {
		var h strings.Builder
		for _, k := range []string{"bundle", "daemons", "env", "internal", "ip", "subnet"} {
			h.WriteString(k + "=" + out[i].Inputs[k] + ";")
		}
		out[i].Hash = h.String()
	}
	return out
}

// observed returns what applying w produced: everything running, attached.
func (w world) observed() []Resource {
	rs := w.desired()
	for i := range rs {
		r := &rs[i]
		r.Managed, r.EngineID, r.State = true, r.Name+"-id", StateRunning
		if r.Kind == "network" {
			r.State = StatePresent
		}
		r.Attached = map[string]string{}
		for _, p := range r.BoundTo {
			r.Attached[p] = strings.Replace(p, "docker-network:"+w.bottle+"/", "bottle-"+w.bottle+"-", 1) + "-id"
		}
	}
	return rs
}

var hello = world{bottle: "hello", subnet: "10.0.0", env: "e1", bundle: "none"}

func with(rs []Resource, role string, f func(*Resource)) []Resource {
	out := append([]Resource(nil), rs...)
	for i := range out {
		if out[i].Role == role && f != nil {
			f(&out[i])
		}
	}
	return out
}

// addDefaults gives r one more input, "defaults", as the providers' agents
// and bundles got one: it changes the hash.
func addDefaults(r *Resource) {
	r.Inputs = maps.Clone(r.Inputs)
	r.Inputs["defaults"] = "1"
	r.Hash += "defaults=1;"
}

// inSet returns rs with each resource of the spec set s.
func inSet(s string, rs []Resource) []Resource {
	out := slices.Clone(rs)
	for i := range out {
		out[i].Set = s
	}
	return out
}

// volume is a named volume observed as bottle-apply's; path is set for a
// smolvm one, which is a directory.
func volume(b, name, path string) Resource {
	r := Resource{Provider: "docker", Kind: "volume", Bottle: b, Role: name, Name: "bottle-" + b + "-" + name,
		Hash: "v", Managed: true, Persistent: true, State: StatePresent, EngineID: name + "-id"}
	if path != "" {
		r.Provider, r.Summary = "smolvm", map[string]string{"path": path}
	}
	return r
}

func TestRender(t *testing.T) {
	t.Parallel()
	changed := hello
	changed.env = "e2"
	stopped := with(changed.observed(), "bundle", func(r *Resource) { r.State, r.Status = StateStopped, "Exited (0) 1 second ago" })
	mixed := append(changed.desired(), world{bottle: "new", subnet: "10.0.3", env: "e", bundle: "none"}.desired()...)
	mixed = with(mixed, "agent", func(r *Resource) {
		if r.Bottle == "new" {
			r.Summary = map[string]string{"image": "agent:1", "proxy": "http://10.0.3.2:8888"}
		}
	})
	cases := []struct {
		name              string
		desired, observed []Resource
		scope             []string
		prune             string
		color             bool
	}{
		{name: "no-changes", desired: hello.desired(), observed: hello.observed()},
		{name: "from-nothing", desired: hello.desired()},
		{name: "mixed", desired: mixed, observed: append(stopped, with(hello.observed(), "agent", func(r *Resource) {})...)[:4],
			scope: []string{"hello", "new"}},
		{name: "replace-and-start", desired: hello.desired(), observed: with(stopped, "x", nil), color: false},
		// The first apply after an upgrade that adds the "defaults" input.
		{name: "defaults-changed", desired: with(with(hello.desired(), "agent", addDefaults), "bundle", addDefaults), observed: hello.observed()},
		{name: "destroy", observed: hello.observed()},
		{name: "destroy-color", observed: hello.observed(), color: true},
		// A destroy without --volumes, and a volume dropped from the spec.
		{name: "destroy-keeps-volumes", observed: append(hello.observed(), volume("hello", "work", ""), volume("hello", "home", "/home/me/my state/volumes/hello/home"))},
		{name: "no-changes-keeps-volume", desired: hello.desired(), observed: append(hello.observed(), volume("hello", "work", ""))},
		// apply --set team-a --prune: gone left the specs of team-a, and
		// its volume is kept without --volumes.
		{name: "prune", desired: hello.desired(), prune: "team-a", observed: append(hello.observed(),
			inSet("team-a", append(world{bottle: "gone", subnet: "10.0.1", env: "g", bundle: "none"}.observed(), volume("gone", "work", "")))...)},
		{name: "destroy-keeps-cluster-volume", scope: []string{"kube"}, observed: []Resource{
			{Provider: "kubernetes", Kind: "namespace", Bottle: "kube", Role: "namespace", Name: "bottle-kube", Hash: "n", Managed: true, Persistent: true,
				State: StatePresent, Summary: map[string]string{"holds": "the bottle's volumes", "remove": "kubectl delete namespace bottle-kube"}},
			{Provider: "kubernetes", Kind: "persistentvolumeclaim", Bottle: "kube", Role: "work", Name: "bottle-kube-work", Hash: "v", Managed: true, Persistent: true,
				State: StatePresent, Summary: map[string]string{"namespace": "bottle-kube", "remove": "kubectl delete pvc -n bottle-kube bottle-kube-work"}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scope := tc.scope
			if scope == nil {
				scope = []string{"hello"}
			}
			plan, err := Diff(tc.desired, tc.observed, Scope{Bottles: scope, Prune: tc.prune})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := Render(&buf, plan, tc.color); err != nil {
				t.Fatal(err)
			}
			golden(t, "render-"+tc.name, buf.String())
		})
	}
}

func TestPlanDocJSON(t *testing.T) {
	t.Parallel()
	plan, err := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(Doc(plan))
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Steps []struct {
			ID       int    `json:"id"`
			Action   string `json:"action"`
			Resource string `json:"resource"`
		} `json:"steps"`
		Changes map[string]int `json:"changes"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Steps) != 4 || back.Steps[0].Action != "create" || back.Changes["create"] != 4 {
		t.Fatalf("plan JSON = %s", b)
	}
	if !strings.Contains(string(b), `"resource":"docker-network:hello/egress"`) {
		t.Fatalf("plan JSON lacks resource IDs: %s", b)
	}
}

// A prune's plan names the pruned bottles in JSON, and its deletes say
// why; a plan without a prune has no "pruned".
func TestPlanDocJSONPruned(t *testing.T) {
	t.Parallel()
	gone := inSet("team-a", world{bottle: "gone", subnet: "10.0.1", env: "g", bundle: "none"}.observed())
	for _, tc := range []struct {
		prune  string
		pruned []string
	}{{"team-a", []string{"gone"}}, {"", nil}} {
		plan, err := Diff(hello.desired(), append(hello.observed(), gone...), Scope{Bottles: []string{"hello"}, Prune: tc.prune})
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(Doc(plan))
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Pruned []string `json:"pruned"`
			Steps  []struct {
				Action, Reason string
			} `json:"steps"`
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		deletes := 0
		for _, s := range back.Steps {
			if s.Action == "delete" && s.Reason == "not in spec set team-a" {
				deletes++
			}
		}
		if !slices.Equal(back.Pruned, tc.pruned) || deletes != 4*len(tc.pruned) {
			t.Errorf("prune %q: pruned %q, %d deletes; want %q and 4 deletes each:\n%s", tc.prune, back.Pruned, deletes, tc.pruned, b)
		}
	}
}

// A replace says what it keeps and discards, in text and JSON; a create
// has nothing to keep.
func TestPlanSaysWhatAReplaceKeeps(t *testing.T) {
	t.Parallel()
	changed := hello
	changed.env = "e2"
	plan, err := Diff(changed.desired(), hello.observed(), Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Render(&buf, plan, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keeps: the networks and the bundle\n", "discards: the agent's files\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the plan lacks %q:\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), "the agent as it runs") {
		t.Errorf("the plan says what an unchanged bundle keeps:\n%s", buf.String())
	}
	for _, sd := range Doc(plan).Steps {
		if (sd.Action == Replace) != (sd.Keeps != "") {
			t.Errorf("step %s %s: keeps %q", sd.Action, sd.Resource, sd.Keeps)
		}
	}
	created, err := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := Render(&buf, created, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "keeps:") {
		t.Errorf("a plan of creates says what it keeps:\n%s", buf.String())
	}
}

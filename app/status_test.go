package app

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	res := func(provider, kind, role string, state reconcile.State, status string) reconcile.Resource {
		return reconcile.Resource{Provider: provider, Kind: kind, Bottle: "b", Role: role, Name: "bottle-b-" + role,
			Managed: true, State: state, Status: status}
	}
	net := res("docker", "network", bottle.RoleInternal, reconcile.StatePresent, "")
	net.Summary = map[string]string{"subnet": "10.0.0.0/24"}
	net.Created = time.Unix(100, 0)
	bundle := res("docker", "container", bottle.RoleBundle, reconcile.StateRunning, "Up 3 minutes")
	bundle.Summary = map[string]string{"ip": "10.0.0.2"}
	bundle.Created = time.Unix(200, 0)
	agent := res("docker", "container", bottle.RoleAgent, reconcile.StateRunning, "Up 3 minutes")
	exited := res("docker", "container", bottle.RoleAgent, reconcile.StateStopped, "Exited (137) 3 minutes ago")
	created := res("docker", "container", bottle.RoleBundle, reconcile.StateCreated, "Created")
	failed := res("docker", "container", bottle.RoleAgent, reconcile.StateFailed, "Dead")
	vol := res("docker", "volume", "cache", reconcile.StatePresent, "")
	vol.Persistent = true
	machine := res("smolvm", "machine", bottle.RoleAgent, reconcile.StateRunning, "")
	kubeAgent := res("kubernetes", "statefulset", bottle.RoleAgent, reconcile.StatePresent, "CrashLoopBackOff")
	kubeBundle := res("kubernetes", "deployment", bottle.RoleBundle, reconcile.StateRunning, "Running")
	kubeNS := res("kubernetes", "namespace", "namespace", reconcile.StatePresent, "present")
	kubeNS.Persistent = true
	tests := []struct {
		name                 string
		rs                   []reconcile.Resource
		state, agent, bundle string
		backend              string
		volumes              int
	}{
		{name: "nothing is missing", state: StateMissing, agent: StateMissing, bundle: StateMissing},
		{name: "both run", rs: []reconcile.Resource{net, bundle, agent, vol}, state: StateRunning, agent: StateRunning, bundle: StateRunning,
			backend: "docker", volumes: 1},
		{name: "an exited agent keeps its code", rs: []reconcile.Resource{net, bundle, exited}, state: StateDegraded,
			agent: "exited (137)", bundle: StateRunning, backend: "docker"},
		{name: "a removed agent degrades", rs: []reconcile.Resource{net, bundle}, state: StateDegraded, agent: StateMissing,
			bundle: StateRunning, backend: "docker"},
		{name: "none runs", rs: []reconcile.Resource{net, created, exited}, state: StateStopped, agent: "exited (137)",
			bundle: StateStopped, backend: "docker"},
		{name: "networks alone are stopped", rs: []reconcile.Resource{net}, state: StateStopped, agent: StateMissing,
			bundle: StateMissing, backend: "docker"},
		{name: "failed", rs: []reconcile.Resource{net, bundle, failed}, state: StateDegraded, agent: StateFailed, bundle: StateRunning, backend: "docker"},
		{name: "a smolvm agent makes it smolvm", rs: []reconcile.Resource{bundle, machine, net}, state: StateRunning,
			agent: StateRunning, bundle: StateRunning, backend: "smolvm"},
		{name: "kubernetes pods in their words; a namespace is no volume", rs: []reconcile.Resource{kubeNS, kubeAgent, kubeBundle},
			state: StateDegraded, agent: "crashloopbackoff", bundle: StateRunning, backend: "kubernetes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := summarize("b", tt.rs)
			if got.State != tt.state || got.Agent != tt.agent || got.Bundle != tt.bundle || got.Backend != tt.backend || len(got.Volumes) != tt.volumes {
				t.Errorf("summarize = state %q agent %q bundle %q backend %q volumes %v; want %q %q %q %q %d",
					got.State, got.Agent, got.Bundle, got.Backend, got.Volumes, tt.state, tt.agent, tt.bundle, tt.backend, tt.volumes)
			}
			if len(got.Resources) != len(tt.rs) {
				t.Errorf("resources %d, want %d", len(got.Resources), len(tt.rs))
			}
		})
	}
	t.Run("subnet, bundle address and the oldest creation", func(t *testing.T) {
		t.Parallel()
		got := summarize("b", []reconcile.Resource{bundle, net, agent})
		if got.Subnet != "10.0.0.0/24" || got.BundleAddress != "10.0.0.2" || !got.Created.Equal(time.Unix(100, 0)) {
			t.Errorf("subnet %q, bundle %q, created %v", got.Subnet, got.BundleAddress, got.Created)
		}
	})
}

func TestNotRunning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		res  StatusResult
		want bool
	}{
		{name: "all running", res: StatusResult{Bottles: []BottleStatus{{State: StateRunning}}}},
		{name: "one stopped", res: StatusResult{Bottles: []BottleStatus{{State: StateRunning}, {State: StateStopped}}}, want: true},
		{name: "specs: in sync", res: StatusResult{Specs: true, Bottles: []BottleStatus{{State: StateStopped, InSync: true}}}},
		{name: "specs: drifted", res: StatusResult{Specs: true, Bottles: []BottleStatus{{State: StateRunning}}}, want: true},
		{name: "nothing listed", res: StatusResult{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.res.NotRunning(); got != tt.want {
				t.Errorf("NotRunning = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestUnresolved: a bottle whose secret's source is absent gets a reason,
// naming the secret, never its value; the others resolve. Not parallel: it
// sets the environment.
func TestUnresolved(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("BOTTLE_UNIT_PRESENT", "sk-unit-present-value")
	dir := t.TempDir()
	doc := "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: NAME}\nspec:\n  agent:\n    image: alpine\n"
	files := map[string]string{
		"ok":   "    secretEnv: {KEY: {valueFrom: {env: BOTTLE_UNIT_PRESENT}}}\n",
		"one":  "    secretEnv: {KEY: {valueFrom: {env: BOTTLE_UNIT_PRESENT}}, GONE: {valueFrom: {env: BOTTLE_UNIT_ABSENT}}}\n",
		"two":  "    secretEnv: {A: {valueFrom: {env: BOTTLE_UNIT_ABSENT}}, B: {valueFrom: {file: absent.txt}}}\n",
		"none": "",
	}
	var paths []string
	for name, extra := range files {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(strings.Replace(doc, "NAME", name, 1)+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	specs, err := spec.Load(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := unresolved(bottle.NewAll(specs))
	want := map[string]string{"one": "secret GONE not available", "two": "secrets A, B not available"}
	if !maps.Equal(got, want) {
		t.Errorf("unresolved = %q, want %q", got, want)
	}
	for _, why := range got {
		if strings.Contains(why, "sk-unit") {
			t.Errorf("a value in %q", why)
		}
	}
}

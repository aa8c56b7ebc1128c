package smolvm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/secret"
	"github.com/bottle-apply/bottle-apply/spec"
)

func TestTranslate(t *testing.T) {
	t.Parallel()
	r, err := translate(testBottle("hello"), "test", "docker-save|registry-pack")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != "smolvm-machine:hello/agent" || r.Name != "bottle-hello-agent" {
		t.Errorf("ID %s, name %s", r.ID(), r.Name)
	}
	// The hash is pinned: a change replaces every machine. Changed on
	// purpose once, for the defaults (see TestTranslateDefaults).
	if r.Hash != "8a32e525ff4745a166a474a89d44f0180819ad34b1df7cc1733b925dc4277502" {
		t.Errorf("hash = %s; if the change is intended, every smolvm agent will be replaced", r.Hash)
	}
	if got, want := reconcile.EncodeInputs(r.Inputs),
		"allowCIDRs=b3e869832954,command=b6d1f2b79cf8,cpus=d4735e3a265e,defaults=6b86b273ff34,env=c73dd9fca58e,image=aafef1ff3662,memory=e39eef82f61b,workdir=34a2a48f0969"; got != want {
		t.Errorf("inputs = %s, want %s", got, want)
	}
	if want := []string{"docker-network:hello/internal", "docker-container:hello/bundle"}; !slices.Equal(r.DependsOn, want) {
		t.Errorf("DependsOn = %q, want %q", r.DependsOn, want)
	}
	// The plan says which platform of the image the machine gets.
	wantSummary := map[string]string{"image": "agent:1", "allow": "10.77.0.2/32,192.0.2.0/24", "route": "docker-save|registry-pack",
		"platform": "linux/" + runtime.GOARCH}
	if !reflect.DeepEqual(r.Summary, wantSummary) {
		t.Errorf("Summary = %v, want %v", r.Summary, wantSummary)
	}
	cfg := r.Config.(machineConfig)
	wantCfg := machineConfig{
		Name: "bottle-hello-agent", Bottle: "hello", Image: "agent:1", Cmd: []string{"sleep", "infinity"}, Workdir: "/work",
		Env: []string{"A=1", "HTTPS_PROXY=http://10.77.0.2:8888", "HTTP_PROXY=http://10.77.0.2:8888", "NODE_USE_ENV_PROXY=1",
			"NO_PROXY=localhost,127.0.0.1", "http_proxy=http://10.77.0.2:8888", "https_proxy=http://10.77.0.2:8888", "no_proxy=localhost,127.0.0.1"},
		AllowCIDRs: []string{"10.77.0.2/32", "192.0.2.0/24"}, CPUs: 2, MemoryMiB: 1024,
		Labels: map[string]string{
			bottle.LabelName: "hello", bottle.LabelRole: "agent", bottle.LabelHash: r.Hash, bottle.LabelInputs: reconcile.EncodeInputs(r.Inputs), bottle.LabelVersion: "test",
		},
		Record: record{Name: "bottle-hello-agent", Bottle: "hello", Role: "agent", Hash: r.Hash, Inputs: r.Inputs, Version: "test"},
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("Config:\n got  %+v\n want %+v", cfg, wantCfg)
	}
}

func TestTranslateInputs(t *testing.T) {
	t.Parallel()
	base, _ := translate(testBottle("hello"), "test", "")
	tests := []struct {
		name    string
		edit    func(b *bottle.Bottle)
		changed string // the inputs whose digests change, sorted
	}{
		{"nothing but bottle-apply's version", func(*bottle.Bottle) {}, ""},
		{"image", func(b *bottle.Bottle) { b.Spec.Agent.Image = "agent:2" }, "image"},
		{"command", func(b *bottle.Bottle) { b.Spec.Agent.Command = []string{"sh"} }, "command"},
		{"workdir", func(b *bottle.Bottle) { b.Spec.Agent.Workdir = "/" }, "workdir"},
		{"env", func(b *bottle.Bottle) { b.Spec.Agent.Env["B"] = "2" }, "env"},
		{"bundle IP", func(b *bottle.Bottle) { b.Network.BundleIP = "10.77.0.3" }, "allowCIDRs"},
		{"allowCIDRs", func(b *bottle.Bottle) { b.Network.AllowCIDRs = nil }, "allowCIDRs"},
		{"cpus", func(b *bottle.Bottle) { b.Spec.Agent.CPUs = 4 }, "cpus"},
		{"memory unset", func(b *bottle.Bottle) { b.Spec.Agent.Memory = 0 }, "memory"},
		{"memory at the default", func(b *bottle.Bottle) { b.Spec.Agent.Memory = spec.DefaultAgentMemory }, "memory"},
		{"NODE_USE_ENV_PROXY set", func(b *bottle.Bottle) { b.Spec.Agent.Env["NODE_USE_ENV_PROXY"] = "0" }, "env"},
		{"egress subnet is the bundle's business", func(b *bottle.Bottle) { b.Network.EgressSubnet = "10.99.0.0/28" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := testBottle("hello")
			tt.edit(b)
			r, err := translate(b, "other-version", "")
			if err != nil {
				t.Fatal(err)
			}
			var changed []string
			for k := range mergeKeys(base.Inputs, r.Inputs) {
				if base.Inputs[k] != r.Inputs[k] {
					changed = append(changed, k)
				}
			}
			slices.Sort(changed)
			if got := strings.Join(changed, ","); got != tt.changed {
				t.Errorf("changed inputs = %q, want %q", got, tt.changed)
			}
			if (r.Hash != base.Hash) != (tt.changed != "") {
				t.Errorf("hash changed = %v, want %v", r.Hash != base.Hash, tt.changed != "")
			}
		})
	}
}

func mergeKeys(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func TestTranslateNoSizes(t *testing.T) {
	t.Parallel()
	b := testBottle("hello")
	b.Spec.Agent.CPUs, b.Spec.Agent.Memory = 0, 0
	r, err := translate(b, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Inputs["cpus"]; ok {
		t.Error("cpus should not be an input when unset")
	}
	if _, ok := r.Inputs["memory"]; ok {
		t.Error("memory should not be an input when unset")
	}
	if _, ok := r.Summary["route"]; ok {
		t.Error("no route is shown before smolvm is detected")
	}
	// No CPUs: smolvm's default. No memory: bottle-apply's, passed.
	cfg := r.Config.(machineConfig)
	args := createArgs(v193, createOpts{Name: "n", Image: "i", CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB})
	if slices.Contains(args, "--cpus") {
		t.Errorf("unset cpus passed: %q", args)
	}
	if i := slices.Index(args, "--mem"); i < 0 || i+1 >= len(args) || args[i+1] != "8192" {
		t.Errorf("create argv %q: want --mem 8192, the default", args)
	}
	if cfg.MemoryMiB != spec.DefaultAgentMemory || !slices.Contains(cfg.Env, "NODE_USE_ENV_PROXY=1") {
		t.Errorf("config: memory %d MiB, env %q; want the defaults", cfg.MemoryMiB, cfg.Env)
	}
}

// TestTranslateDefaults: the hash before the defaults is the hash without
// the "defaults" input, so that the first apply after the upgrade replaces
// every machine saying "defaults changed", and nothing else.
func TestTranslateDefaults(t *testing.T) {
	t.Parallel()
	r, err := translate(testBottle("hello"), "test", "")
	if err != nil {
		t.Fatal(err)
	}
	before := maps.Clone(r.Inputs)
	delete(before, "defaults")
	raw, err := json.Marshal(before)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	// The hash TestTranslate pinned before the defaults.
	if got := hex.EncodeToString(sum[:]); got != "4df765aeb2e167a08aeca08d57dcdb5f2532da74fe1efb6c1d8e58d686d99f0a" {
		t.Fatalf("without the defaults input the hash is %s, not the one before the defaults", got)
	}
	p, err := reconcile.Diff([]reconcile.Resource{r}, []reconcile.Resource{{Provider: r.Provider, Kind: r.Kind, Bottle: r.Bottle,
		Role: r.Role, Name: r.Name, Hash: hex.EncodeToString(sum[:]), Inputs: before, Managed: true, State: reconcile.StateRunning}},
		reconcile.Scope{Bottles: []string{"hello"}})
	if err != nil || len(p.Steps) != 1 || p.Steps[0].Action != reconcile.Replace || p.Steps[0].Reason != "defaults changed" {
		t.Fatalf("a machine made before the defaults: %v, %v; want a replace, defaults changed", p, err)
	}
}

func TestTranslateNeedsBundleIP(t *testing.T) {
	t.Parallel()
	b := testBottle("hello")
	b.Network.BundleIP = ""
	if _, err := translate(b, "test", ""); err == nil || !strings.HasPrefix(err.Error(), "internal:") {
		t.Errorf("translate = %v, want an internal error", err)
	}
}

func TestDesired(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, map[string]string{}, version("1.8.0"))
	docker := testBottle("plain")
	docker.Spec.Backend = spec.BackendDocker
	dflt := testBottle("dflt")
	dflt.Spec.Backend = "" // defaults make it docker; never smolvm
	rs, err := e.p.Desired([]*bottle.Bottle{docker, testBottle("a"), dflt, testBottle("b")}, nil)
	if err != nil || len(rs) != 2 || rs[0].Bottle != "a" || rs[1].Bottle != "b" || rs[0].Summary["route"] != "" {
		t.Fatalf("Desired = %v, %v", rs, err)
	}
	// After detection the plan shows the candidate routes.
	if _, err := e.p.Available(t.Context()); err != nil {
		t.Fatal(err)
	}
	rs, _ = e.p.Desired([]*bottle.Bottle{testBottle("a")}, nil)
	if got := rs[0].Summary["route"]; got != "loopback-pack|registry-pack" {
		t.Errorf("route = %q", got)
	}
	noImages := New(nil, Options{})
	if got := noImages.plannedRoute(v193); got != "registry-pack" {
		t.Errorf("route without an image source = %q", got)
	}
}

const plantedSecret = "sk-planted-5e4d3c"

// withSecret gives a bottle one resolved secret, as secret.Resolve does.
func withSecret(b *bottle.Bottle, value string) *bottle.Bottle {
	b.Spec.Agent.SecretEnv = map[string]spec.SecretSource{"API_KEY": {ValueFrom: spec.ValueFrom{Env: "ANTHROPIC_API_KEY"}}}
	b.Secrets = []bottle.Secret{{Name: "API_KEY", Value: value,
		Digest: secret.Digest([]byte("0123456789abcdef0123456789abcdef"), "API_KEY", value)}}
	return b
}

func TestTranslateSecrets(t *testing.T) {
	t.Parallel()
	base, _ := translate(testBottle("hello"), "test", "")
	r, err := translate(withSecret(testBottle("hello"), plantedSecret), "test", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config.(machineConfig)
	if !slices.Contains(cfg.Env, "API_KEY="+plantedSecret) || !slices.IsSorted(cfg.Env) {
		t.Errorf("Env = %q, want API_KEY among them, sorted", cfg.Env)
	}
	if !slices.Equal(cfg.Secrets, []string{plantedSecret}) {
		t.Errorf("Secrets = %q", cfg.Secrets)
	}
	for k, v := range base.Inputs {
		if r.Inputs[k] != v {
			t.Errorf("input %s changed with a secret", k)
		}
	}
	if len(r.Inputs) != len(base.Inputs)+1 || r.Inputs["secretEnv"] == "" {
		t.Errorf("inputs %v, want one more (secretEnv) than %v", r.Inputs, base.Inputs)
	}
	changed, _ := translate(withSecret(testBottle("hello"), plantedSecret+"-rotated"), "test", "")
	p, err := reconcile.Diff([]reconcile.Resource{changed}, []reconcile.Resource{{Provider: r.Provider, Kind: r.Kind, Bottle: r.Bottle,
		Role: r.Role, Name: r.Name, Hash: r.Hash, Inputs: r.Inputs, Managed: true, State: reconcile.StateRunning}},
		reconcile.Scope{Bottles: []string{"hello"}})
	if err != nil || len(p.Steps) != 1 || p.Steps[0].Action != reconcile.Replace || p.Steps[0].Reason != "secretEnv changed" {
		t.Fatalf("a new secret value: %v, %v; want a replace, secretEnv changed", p, err)
	}
	all := fmt.Sprint(r.Summary, r.Inputs, cfg.Labels, cfg.Record, r.Hash)
	if strings.Contains(all, plantedSecret) {
		t.Errorf("the secret shows outside the env: %s", all)
	}
	args := createArgs(v193, createOpts{Name: cfg.Name, Image: "i", Env: cfg.Env, Labels: cfg.Labels, Cmd: cfg.Cmd})
	if i := slices.Index(args, "API_KEY="+plantedSecret); i < 1 || args[i-1] != "-e" || slices.Index(args, "--") < i {
		t.Errorf("create argv %q: want -e API_KEY=... before --", args)
	}
	if shown := PrettyCommand(Redact(args)); strings.Contains(shown, plantedSecret) || !strings.Contains(shown, "API_KEY=REDACTED") {
		t.Errorf("redacted argv: %s", shown)
	}
	// Without secrets the machine hashes as before (the pinned hash in
	// TestTranslate): an empty secretEnv changes nothing.
	empty := testBottle("hello")
	empty.Spec.Agent.SecretEnv, empty.Secrets = map[string]spec.SecretSource{}, []bottle.Secret{}
	if e, _ := translate(empty, "test", ""); e.Hash != base.Hash {
		t.Error("an empty secretEnv changes the hash")
	}
	unresolved := withSecret(testBottle("hello"), plantedSecret)
	unresolved.Secrets = nil
	if _, err := translate(unresolved, "test", ""); err == nil || err.Error() != "internal: bottle hello: the secrets of spec.agent.secretEnv were not read" {
		t.Errorf("unresolved secrets: %v", err)
	}
}

// TestCreateErrorRedactsSecrets: smolvm's output may repeat what it was
// given; the error must not.
func TestCreateErrorRedactsSecrets(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, map[string]string{"agent:1": imageID})
	archive := filepath.Join(e.cache, "images", contentKey(imageID)+".tar")
	r := desiredOne(t, e.p, withSecret(testBottle("hello"), plantedSecret))
	fr := e.p.cli.r.(*fakeRunner)
	cfg := r.Config.(machineConfig)
	labels := maps.Clone(cfg.Labels)
	labels[labelImageID] = imageID // made of the local image
	createArgv := argv(createArgs(v193, createOpts{Name: cfg.Name, Image: archive, AllowCIDRs: cfg.AllowCIDRs, Env: cfg.Env,
		CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB, Workdir: cfg.Workdir, Labels: labels, Cmd: cfg.Cmd})...)
	if !slices.Contains(createArgv, "API_KEY="+plantedSecret) {
		t.Fatalf("create argv lacks the secret: %q", createArgv)
	}
	fr.script = []call{
		version("1.9.3"),
		{argv: createArgv, err: &RunError{Argv: createArgv, ExitCode: 1,
			Stderr: "Error: machine 'bottle-hello-agent' already exists (env API_KEY=" + plantedSecret + ")"}},
	}
	err := e.p.Apply(t.Context(), createStep(r))
	if err == nil || strings.Contains(err.Error(), plantedSecret) || !strings.Contains(err.Error(), "API_KEY=REDACTED") {
		t.Fatalf("error: %v", err)
	}
	var re *RunError
	if !errors.As(err, &re) || !errors.Is(err, reconcile.ErrRetry) {
		t.Errorf("the error lost its chain: %v", err)
	}
}

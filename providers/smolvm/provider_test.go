package smolvm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

func testBottle(name string) *bottle.Bottle {
	b := bottle.New(spec.Bottle{
		APIVersion: spec.APIVersion, Kind: spec.KindBottle,
		Metadata: spec.Metadata{Name: name},
		Spec: spec.Spec{
			Backend: spec.BackendSmolvm,
			Agent: spec.Agent{
				Image: "agent:1", Command: []string{"sleep", "infinity"}, Workdir: "/work",
				Env: map[string]string{"A": "1"}, CPUs: 2, Memory: 1024,
			},
			Network: spec.Network{
				Subnet: "10.77.0.0/24", BundleIP: "10.77.0.2", EgressSubnet: "10.78.0.0/28",
				AllowCIDRs: []string{"192.0.2.0/24"},
			},
		},
	})
	return &b
}

type testEnv struct {
	p      *Provider
	cache  string
	state  string
	events *[]string
}

// newTestProvider returns a provider over a scripted runner. With ids nil
// there is no image source.
func newTestProvider(t *testing.T, ids map[string]string, script ...call) *testEnv {
	t.Helper()
	events := new([]string)
	e := &testEnv{cache: t.TempDir(), state: t.TempDir(), events: events}
	opts := Options{CacheDir: e.cache, StateDir: e.state, Version: "test"}
	if ids != nil {
		opts.Images = &fakeImages{ids: ids, events: events}
	}
	e.p = New(newFakeRunner(t, events, script...), opts)
	return e
}

func desiredOne(t *testing.T, p *Provider, b *bottle.Bottle) reconcile.Resource {
	t.Helper()
	rs, err := p.Desired([]*bottle.Bottle{b}, nil)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Desired = %v, %v", rs, err)
	}
	return rs[0]
}

func argv(s ...string) []string { return append([]string{"smolvm"}, s...) }

func version(v string) call { return call{argv: argv("--version"), stdout: "smolvm " + v + "\n"} }

// agentFlags are the create flags of testBottle("hello") after the source.
var agentFlags = []string{
	"--allow-cidr", "10.77.0.2/32", "--allow-cidr", "192.0.2.0/24",
	"-e", "A=1",
	"-e", "HTTPS_PROXY=http://10.77.0.2:8888",
	"-e", "HTTP_PROXY=http://10.77.0.2:8888",
	"-e", "NODE_USE_ENV_PROXY=1",
	"-e", "NO_PROXY=localhost,127.0.0.1",
	"-e", "http_proxy=http://10.77.0.2:8888",
	"-e", "https_proxy=http://10.77.0.2:8888",
	"-e", "no_proxy=localhost,127.0.0.1",
	"--cpus", "2", "--mem", "1024", "-w", "/work",
}

// labelFlags are the labels of the machine of r; the content ID it is
// made of is r's desired one (a local image).
func labelFlags(r reconcile.Resource) []string {
	var image []string
	if r.ImageID != "" {
		image = []string{"--label", "io.bottle-apply.image-id=" + r.ImageID}
	}
	return cat([]string{"--label", "io.bottle-apply.config-hash=" + r.Hash}, image, []string{
		"--label", "io.bottle-apply.inputs=" + reconcile.EncodeInputs(r.Inputs),
		"--label", "io.bottle-apply.name=" + r.Bottle,
		"--label", "io.bottle-apply.role=agent",
		"--label", "io.bottle-apply.version=test",
	})
}

func cat(parts ...[]string) []string { return slices.Concat(parts...) }

const imageID = "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

func createStep(r reconcile.Resource) reconcile.Step {
	return reconcile.Step{ID: 1, Action: reconcile.Create, ResourceID: r.ID(), Resource: r}
}

func evt(c call) string { return "run " + strings.Join(c.argv[1:], " ") }

func checkEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

// Route (a): smolvm 1.9 and a local image: docker save, create --image.
func TestCreateFromLocalImageArchive(t *testing.T) {
	t.Parallel()
	var archive string
	e := newTestProvider(t, map[string]string{"agent:1": imageID})
	archive = filepath.Join(e.cache, "images", contentKey(imageID)+".tar")
	r := desiredOne(t, e.p, testBottle("hello"))
	r2 := desiredOne(t, e.p, testBottle("second"))
	fr := e.p.cli.r.(*fakeRunner)
	fr.script = []call{
		version("1.9.3"),
		{argv: cat(argv("machine", "create", "--name", "bottle-hello-agent", "--image", archive), agentFlags,
			labelFlags(r), []string{"--", "sleep", "infinity"})},
		{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
		// The second machine reuses the archive.
		{argv: cat(argv("machine", "create", "--name", "bottle-second-agent", "--image", archive), agentFlags,
			labelFlags(r2), []string{"--", "sleep", "infinity"})},
		{argv: argv("machine", "start", "--name", "bottle-second-agent")},
	}
	if err := e.p.Apply(t.Context(), createStep(r)); err != nil {
		t.Fatal(err)
	}
	mustExist(t, archive)
	if err := e.p.Apply(t.Context(), createStep(r2)); err != nil {
		t.Fatal(err)
	}
	checkEvents(t, *e.events,
		"run --version", "image-id agent:1", "save agent:1", evt(fr.script[1]), evt(fr.script[2]),
		"image-id agent:1", evt(fr.script[3]), evt(fr.script[4]),
	)
	entries, _ := os.ReadDir(filepath.Dir(archive))
	if len(entries) != 1 {
		t.Errorf("images dir holds %d entries, want the archive alone", len(entries))
	}
	mustNotExist(t, filepath.Join(e.state, "bottle-hello-agent.json")) // labels, not records, from 1.8
}

// Route (b): smolvm before 1.9 and a local image: a loopback registry for
// the pack, stopped before create --from.
func TestCreateFromLocalImagePack(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, map[string]string{"agent:1": imageID})
	r := desiredOne(t, e.p, testBottle("hello"))
	packDir := filepath.Join(e.cache, "packs", contentKey(imageID))
	staging := filepath.Join(e.cache, "packs", fmt.Sprintf(".%s.%d", contentKey(imageID), os.Getpid()))
	e.p.cli.r.(*fakeRunner).script = []call{
		version("1.8.0"),
		{argv: argv("pack", "create", "-I", "127.0.0.1:5000/agent:1", "-o", filepath.Join(staging, "agent")),
			do: packs(t, filepath.Join(staging, "agent"))},
		{argv: cat(argv("machine", "create", "--name", "bottle-hello-agent", "--from", filepath.Join(packDir, "agent.smolmachine")),
			agentFlags, labelFlags(r))}, // no command before 1.9
		{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
	}
	if err := e.p.Apply(t.Context(), createStep(r)); err != nil {
		t.Fatal(err)
	}
	ev := *e.events
	checkEvents(t, ev[:5], "run --version", "image-id agent:1", "serve agent:1",
		"run pack create -I 127.0.0.1:5000/agent:1 -o "+filepath.Join(staging, "agent"), "stop-serving agent:1")
	mustExist(t, filepath.Join(packDir, "agent"))
	mustExist(t, filepath.Join(packDir, "agent.smolmachine"))
	mustNotExist(t, staging)
}

// Route (c): the engine does not have the image: pack pulls it from its
// registry. smolvm 0.8: positional name, no labels, a state record.
func TestCreateFromRegistryPack08(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, map[string]string{})
	r := desiredOne(t, e.p, testBottle("hello"))
	key := refKey("agent:1")
	if !strings.HasPrefix(key, "agent_1-") {
		t.Errorf("refKey(agent:1) = %s", key)
	}
	packDir := filepath.Join(e.cache, "packs", key)
	staging := filepath.Join(e.cache, "packs", fmt.Sprintf(".%s.%d", key, os.Getpid()))
	e.p.cli.r.(*fakeRunner).script = []call{
		version("0.8.0"),
		{argv: argv("pack", "create", "-I", "agent:1", "-o", filepath.Join(staging, "agent")),
			do: packs(t, filepath.Join(staging, "agent"))},
		{argv: cat(argv("machine", "create", "bottle-hello-agent", "--from", filepath.Join(packDir, "agent.smolmachine")), agentFlags)},
		{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
	}
	if err := e.p.Apply(t.Context(), createStep(r)); err != nil {
		t.Fatal(err)
	}
	checkEvents(t, (*e.events)[:3], "run --version", "image-id agent:1", "run pack create -I agent:1 -o "+filepath.Join(staging, "agent"))
	b, err := os.ReadFile(filepath.Join(e.state, "bottle-hello-agent.json"))
	if err != nil {
		t.Fatalf("no state record: %v", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Name != "bottle-hello-agent" || rec.Bottle != "hello" || rec.Role != "agent" || rec.Hash != r.Hash || len(rec.Inputs) != len(r.Inputs) {
		t.Errorf("record = %+v", rec)
	}
}

// Without an image source, images always come from their registry, and
// an existing pack is reused.
func TestCreateReusesPack(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	r := desiredOne(t, e.p, testBottle("hello"))
	packDir := filepath.Join(e.cache, "packs", refKey("agent:1"))
	if err := os.MkdirAll(packDir, 0o755); err != nil {
		t.Fatal(err)
	}
	packs(t, filepath.Join(packDir, "agent"))()
	e.p.cli.r.(*fakeRunner).script = []call{
		version("1.9.3"),
		{argv: cat(argv("machine", "create", "--name", "bottle-hello-agent", "--from", filepath.Join(packDir, "agent.smolmachine")),
			agentFlags, labelFlags(r), []string{"--", "sleep", "infinity"})},
		{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
	}
	if err := e.p.Apply(t.Context(), createStep(r)); err != nil {
		t.Fatal(err)
	}
}

func TestCreatePullFailureSaysWhatToDo(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, map[string]string{})
	r := desiredOne(t, e.p, testBottle("hello"))
	staging := filepath.Join(e.cache, "packs", fmt.Sprintf(".%s.%d", refKey("agent:1"), os.Getpid()))
	packArgv := argv("pack", "create", "-I", "agent:1", "-o", filepath.Join(staging, "agent"))
	e.p.cli.r.(*fakeRunner).script = []call{
		version("1.9.3"),
		{argv: packArgv, err: smolErr("failed to pull image agent:1: unauthorized", packArgv...)},
	}
	err := e.p.Apply(t.Context(), createStep(r))
	for _, want := range []string{"pack image agent:1", "failed to pull image", "docker pull", "registry is reachable"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	mustNotExist(t, staging)
}

func TestPackHypervisorError(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	staging := filepath.Join(e.cache, "packs", fmt.Sprintf(".%s.%d", refKey("agent:1"), os.Getpid()))
	packArgv := argv("pack", "create", "-I", "agent:1", "-o", filepath.Join(staging, "agent"))
	e.p.cli.r.(*fakeRunner).script = []call{{argv: packArgv, err: smolErr(errKVMMissing, packArgv...)}}
	_, err := e.p.ensureImage(t.Context(), v080, "agent:1")
	for _, want := range []string{"pack image agent:1", "pack boots one", errKVMMissing, "load the KVM kernel module"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// Concurrent creates of one image pack it once.
func TestPackOnce(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	key := refKey("agent:1")
	out := filepath.Join(e.cache, "packs", fmt.Sprintf(".%s.%d", key, os.Getpid()), "agent")
	e.p.cli.r.(*fakeRunner).script = []call{{
		argv: argv("pack", "create", "-I", "agent:1", "-o", out),
		do:   func() { time.Sleep(50 * time.Millisecond); packs(t, out)() },
	}}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			src, err := e.p.ensureImage(t.Context(), v193, "agent:1")
			if err == nil && src.from != filepath.Join(e.cache, "packs", key, "agent.smolmachine") {
				err = fmt.Errorf("from %s", src.from)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

func TestCreateAlreadyExistsIsRetried(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	r := desiredOne(t, e.p, testBottle("hello"))
	packDir := filepath.Join(e.cache, "packs", refKey("agent:1"))
	_ = os.MkdirAll(packDir, 0o755)
	packs(t, filepath.Join(packDir, "agent"))()
	create := cat(argv("machine", "create", "bottle-hello-agent", "--from", filepath.Join(packDir, "agent.smolmachine")), agentFlags)
	e.p.cli.r.(*fakeRunner).script = []call{
		version("0.8.0"),
		{argv: create, err: smolErr(errExists08, create...)},
	}
	err := e.p.Apply(t.Context(), createStep(r))
	if !errors.Is(err, reconcile.ErrRetry) || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Apply = %v, want ErrRetry", err)
	}
	mustNotExist(t, filepath.Join(e.state, "bottle-hello-agent.json"))
}

func TestCreateHypervisorError(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, map[string]string{"agent:1": imageID})
	r := desiredOne(t, e.p, testBottle("hello"))
	archive := filepath.Join(e.cache, "images", contentKey(imageID)+".tar")
	start := argv("machine", "start", "--name", "bottle-hello-agent")
	e.p.cli.r.(*fakeRunner).script = []call{
		version("1.9.3"),
		{argv: cat(argv("machine", "create", "--name", "bottle-hello-agent", "--image", archive), agentFlags,
			labelFlags(r), []string{"--", "sleep", "infinity"})},
		{argv: start, err: smolErr(errKVMPermission, start...)},
	}
	err := e.p.Apply(t.Context(), createStep(r))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		"start machine bottle-hello-agent",
		"smolvm machine start --name bottle-hello-agent (exit 1): Error: " + errKVMPermission,
		"add your user to the kvm group",
		"the next apply starts it",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if errors.Is(err, reconcile.ErrRetry) {
		t.Error("a hypervisor problem is not fixed by retrying")
	}
}

// A stopped machine is planned a Start, which starts it.
func TestStartStoppedMachine(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	r := desiredOne(t, e.p, testBottle("hello"))
	ls := fmt.Sprintf(`[{"name": "bottle-hello-agent", "state": "stopped", "labels": {%q: "hello", %q: "agent", %q: %q, %q: %q}}]`,
		bottle.LabelName, bottle.LabelRole, bottle.LabelHash, r.Hash, bottle.LabelInputs, reconcile.EncodeInputs(r.Inputs))
	e.p.cli.r.(*fakeRunner).script = []call{
		{argv: argv("machine", "ls", "--json"), stdout: ls},
		{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
	}
	scope := reconcile.Scope{Bottles: []string{"hello"}}
	obs, err := e.p.Observe(t.Context(), scope)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := reconcile.Diff([]reconcile.Resource{r}, obs, scope)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plan.String(), "#1 smolvm-machine:hello/agent Start, stopped\n"; got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if err := e.p.Apply(t.Context(), plan.Steps[0]); err != nil {
		t.Fatal(err)
	}
}

// Delete on 0.8: stop first (0.8.0's delete does not), then the positional
// delete -f, then the record goes.
func TestDelete08(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	recPath := filepath.Join(e.state, "bottle-hello-agent.json")
	if err := e.p.writeRecord(record{Name: "bottle-hello-agent", Bottle: "hello", Role: "agent", Hash: "h"}); err != nil {
		t.Fatal(err)
	}
	e.p.cli.r.(*fakeRunner).script = []call{
		{argv: argv("machine", "ls", "--json"), stdout: string(readTestdata(t, "ls-0.8.0.json"))},
		version("0.8.0"),
		{argv: argv("machine", "stop", "--name", "bottle-hello-agent")},
		{argv: argv("machine", "delete", "bottle-hello-agent", "-f")},
	}
	scope := reconcile.Scope{Bottles: []string{"hello"}}
	obs, err := e.p.Observe(t.Context(), scope)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := reconcile.Diff(nil, obs, scope)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plan.String(), "#1 smolvm-machine:hello/agent Delete, not in spec\n"; got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if err := e.p.Apply(t.Context(), plan.Steps[0]); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, recPath)
}

// Delete tolerates a machine that is already gone, and a failed stop.
func TestDeleteTolerates(t *testing.T) {
	t.Parallel()
	m := reconcile.Resource{Provider: ProviderName, Kind: kindMachine, Bottle: "hello", Role: "agent",
		Name: "bottle-hello-agent", Managed: true, Hash: "h"}
	step := reconcile.Step{Action: reconcile.Delete, Resource: m, Observed: &m}
	stop := argv("machine", "stop", "--name", "bottle-hello-agent")
	del := argv("machine", "delete", "--name", "bottle-hello-agent", "-f")
	tests := []struct {
		name    string
		stop    error
		del     error
		wantErr string
	}{
		{"gone", smolErr(errNotFound, stop...), smolErr(errNotFound, del...), ""},
		{"stop fails, delete works", smolErr("agent operation failed: stop: broken pipe", stop...), nil, ""},
		{"both fail", smolErr("agent operation failed: stop: broken pipe", stop...), smolErr("database is locked", del...),
			"delete machine bottle-hello-agent: smolvm machine delete --name bottle-hello-agent -f (exit 1): Error: database is locked\nstop first: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestProvider(t, nil, version("1.9.3"), call{argv: stop, err: tt.stop}, call{argv: del, err: tt.del})
			err := e.p.Apply(t.Context(), step)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Errorf("Apply = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDeleteRefusesUnmanaged(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	m := reconcile.Resource{Provider: ProviderName, Kind: kindMachine, Bottle: "hello", Name: "bottle-hello-agent"}
	err := e.p.Apply(t.Context(), reconcile.Step{Action: reconcile.Delete, Resource: m, Observed: &m})
	if !errors.Is(err, reconcile.ErrNotManaged) {
		t.Errorf("Apply = %v, want ErrNotManaged", err)
	}
}

// Ownership from labels (1.9): ours are managed, a namesake without labels
// is returned unmanaged, foreign machines are not returned.
func TestObserveLabels(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil,
		call{argv: argv("machine", "ls", "--json"), stdout: string(readTestdata(t, "ls-1.9.3.json"))},
	)
	obs, err := e.p.Observe(t.Context(), reconcile.Scope{Bottles: []string{"hello", "other"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := obs[0].Created; !c.Equal(time.Unix(1750000000, 0)) {
		t.Errorf("created %v, want smolvm's created_at", c)
	}
	got := describe(obs)
	want := "smolvm-machine:hello/agent bottle-hello-agent managed running hash=9f86d081884c deps=docker-network:hello/internal,docker-container:hello/bundle inputs=5\n" +
		"smolvm-machine:other/ bottle-other-agent unmanaged stopped\n" +
		"smolvm-machine:forked/agent bottle-forked-agent managed unknown(frozen) hash=2c26b46b68ff deps=docker-network:forked/internal,docker-container:forked/bundle inputs=1\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// Ownership from state records (0.8): a record claims a machine that bears
// the reserved prefix; without one, a namesake is unmanaged.
func TestObserveRecords(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil,
		call{argv: argv("machine", "ls", "--json"), stdout: string(readTestdata(t, "ls-0.8.0.json"))},
	)
	if err := e.p.writeRecord(record{Name: "bottle-hello-agent", Bottle: "hello", Role: "agent", Hash: "abcdef0123456789",
		Inputs: map[string]string{"image": "123456789abc"}}); err != nil {
		t.Fatal(err)
	}
	// A record for a machine that no longer exists is ignored, and one
	// that does not parse claims nothing.
	_ = os.WriteFile(filepath.Join(e.state, "bottle-gone-agent.json"), []byte(`{"name":"bottle-gone-agent","bottle":"gone","role":"agent","hash":"x"}`), 0o644)
	_ = os.WriteFile(filepath.Join(e.state, "dev.json"), []byte(`{"name":"dev","bottle":"dev","role":"agent","hash":"x"}`), 0o644)
	obs, err := e.p.Observe(t.Context(), reconcile.Scope{Bottles: []string{"hello", "other", "dev"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "smolvm-machine:hello/agent bottle-hello-agent managed running hash=abcdef012345 deps=docker-network:hello/internal,docker-container:hello/bundle inputs=1\n" +
		"smolvm-machine:other/ bottle-other-agent unmanaged stopped\n"
	if got := describe(obs); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func describe(rs []reconcile.Resource) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s %s", r.ID(), r.Name)
		if r.Managed {
			b.WriteString(" managed")
		} else {
			b.WriteString(" unmanaged")
		}
		b.WriteString(" " + r.State.String())
		if r.Status != "" {
			b.WriteString("(" + r.Status + ")")
		}
		if r.Hash != "" {
			fmt.Fprintf(&b, " hash=%.12s deps=%s inputs=%d", r.Hash, strings.Join(r.DependsOn, ","), len(r.Inputs))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// The diff refuses to touch an unowned namesake, and says so.
func TestUnownedNamesakeIsRefused(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil,
		call{argv: argv("machine", "ls", "--json"), stdout: string(readTestdata(t, "ls-1.9.3.json"))},
	)
	scope := reconcile.Scope{Bottles: []string{"other"}}
	obs, err := e.p.Observe(t.Context(), scope)
	if err != nil {
		t.Fatal(err)
	}
	_, err = reconcile.Diff([]reconcile.Resource{desiredOne(t, e.p, testBottle("other"))}, obs, scope)
	if !errors.Is(err, reconcile.ErrNotManaged) || !strings.Contains(err.Error(), `smolvm machine "bottle-other-agent"`) {
		t.Errorf("Diff = %v, want ErrNotManaged naming the machine", err)
	}
	// Destroy leaves it alone with a warning.
	plan, err := reconcile.Diff(nil, obs, scope)
	if err != nil || plan.Changes() != 0 || len(plan.Warnings) != 1 {
		t.Errorf("destroy plan = %v (warnings %q), %v", plan, plan.Warnings, err)
	}
}

func TestObserveEmpty(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil, call{argv: argv("machine", "ls", "--json"), stdout: "[]\n"})
	obs, err := e.p.Observe(t.Context(), reconcile.Scope{Bottles: []string{"hello"}})
	if err != nil || len(obs) != 0 {
		t.Errorf("Observe = %v, %v", obs, err)
	}
	// No bottles: nothing runs.
	obs, err = e.p.Observe(t.Context(), reconcile.Scope{})
	if err != nil || obs != nil {
		t.Errorf("Observe of nothing = %v, %v", obs, err)
	}
}

// Without smolvm, Observe sees nothing, Desired refuses smolvm bottles,
// and detection is tried again later.
func TestNotInstalled(t *testing.T) {
	t.Parallel()
	missing := &RunError{Argv: argv("--version"), ExitCode: -1, Err: &exec.Error{Name: "smolvm", Err: exec.ErrNotFound}}
	e := newTestProvider(t, nil,
		call{argv: argv("machine", "ls", "--json"), err: missing},
		call{argv: argv("--version"), err: missing},
		version("1.9.3"),
	)
	if e.p.Missing() {
		t.Error("Missing before anything ran")
	}
	obs, err := e.p.Observe(t.Context(), reconcile.Scope{Bottles: []string{"hello"}})
	if err != nil || obs != nil {
		t.Fatalf("Observe = %v, %v; want nothing", obs, err)
	}
	if !e.p.Missing() {
		t.Error("not Missing after an Observe without smolvm")
	}
	docker := testBottle("plain")
	docker.Spec.Backend = spec.BackendDocker
	if rs, err := e.p.Desired([]*bottle.Bottle{docker}, nil); err != nil || len(rs) != 0 {
		t.Errorf("Desired of a docker bottle = %v, %v", rs, err)
	}
	_, err = e.p.Desired([]*bottle.Bottle{testBottle("hello")}, nil)
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "smolvm not found on PATH; install it or use backend: docker") {
		t.Errorf("Desired = %v, want ErrNotInstalled", err)
	}
	if _, err := e.p.Available(t.Context()); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Available = %v", err)
	}
	if v, err := e.p.Available(t.Context()); err != nil || v != v193 {
		t.Errorf("Available after install = %v, %v", v, err)
	}
	if v, err := e.p.Available(t.Context()); err != nil || v != v193 { // cached: no call
		t.Errorf("Available again = %v, %v", v, err)
	}
}

// statusCall is `machine status --json` of the hello agent, with a user
// label when user is set.
func statusCall(user string) call {
	labels := ""
	if user != "" {
		labels = fmt.Sprintf(`, "labels": {%q: %q}`, labelUser, user)
	}
	return call{argv: argv("machine", "status", "--name", "bottle-hello-agent", "--json"),
		stdout: `{"name": "bottle-hello-agent", "state": "running"` + labels + "}\n"}
}

func TestExec(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil, statusCall(""), call{
		argv: argv("machine", "exec", "--name", "bottle-hello-agent", "-i", "-t", "-w", "/tmp", "-e", "X=1", "--", "sh"),
		code: 42,
	})
	code, err := e.p.Guest("hello").Exec(t.Context(), guest.ExecOptions{Cmd: []string{"sh"}, Env: []string{"X=1"}, Workdir: "/tmp", Interactive: true, TTY: true}, guest.Stdio{})
	if code != 42 || err != nil {
		t.Errorf("Exec = %d, %v; want 42, nil", code, err)
	}
}

func TestExecNotInstalled(t *testing.T) {
	t.Parallel()
	notFound := &RunError{ExitCode: -1, Err: &exec.Error{Name: "smolvm", Err: exec.ErrNotFound}}
	e := newTestProvider(t, nil, call{argv: statusCall("").argv, err: notFound})
	if _, err := e.p.Guest("hello").Exec(t.Context(), guest.ExecOptions{Cmd: []string{"true"}}, guest.Stdio{}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Exec = %v, want ErrNotInstalled", err)
	}
}

func TestCopy(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil,
		// cp makes no parent directories: exec does, relative to / (see
		// guestRel).
		statusCall(""),
		call{argv: argv("machine", "exec", "--name", "bottle-hello-agent", "-w", "/", "--", "mkdir", "-p", "./work")},
		call{argv: argv("machine", "cp", "./notes.txt", "bottle-hello-agent:/work/notes.txt")},
		call{argv: argv("machine", "cp", "bottle-hello-agent:/work/out.log", "out.log")},
		statusCall(""),
		call{argv: argv("machine", "cp", "./a:b", "bottle-hello-agent:/x")},
	)
	ctx := t.Context()
	g := e.p.Guest("hello")
	if err := g.CopyIn(ctx, "./notes.txt", "/work/notes.txt"); err != nil {
		t.Error(err)
	}
	if err := g.CopyOut(ctx, "/work/out.log", "out.log"); err != nil {
		t.Error(err)
	}
	// A host path with a colon must not read as MACHINE:PATH.
	if err := g.CopyIn(ctx, "a:b", "/x"); err != nil {
		t.Error(err)
	}
}

func TestCopyMachineNotRunning(t *testing.T) {
	t.Parallel()
	cp := argv("machine", "cp", "f", "bottle-hello-agent:/f")
	e := newTestProvider(t, nil, statusCall(""), call{argv: cp, err: smolErr(errNotRunning, cp...)})
	err := e.p.Guest("hello").CopyIn(t.Context(), "f", "/f")
	if err == nil || !isNotRunning(err) || !strings.HasPrefix(err.Error(), "copy f to bottle-hello-agent:/f: smolvm machine cp") {
		t.Errorf("Copy = %v", err)
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/xdg/state")
	t.Setenv("XDG_CACHE_HOME", "/xdg/cache")
	p := New(ExecRunner{}, Options{})
	if p.opts.Binary != "smolvm" || p.opts.StateDir != "/xdg/state/bottle-apply/smolvm" || p.Name() != "smolvm" {
		t.Errorf("defaults = %+v", p.opts)
	}
	if runtime.GOOS == "linux" && p.opts.CacheDir != "/xdg/cache/bottle-apply/smolvm" {
		t.Errorf("CacheDir = %s", p.opts.CacheDir)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if p := New(ExecRunner{}, Options{}); p.opts.StateDir != "/home/u/.local/state/bottle-apply/smolvm" {
		t.Errorf("StateDir without XDG_STATE_HOME = %s", p.opts.StateDir)
	}
}

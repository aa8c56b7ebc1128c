package smolvm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// workspaceEnv is a provider whose pack for agent:1 is in the cache, and
// the desired machine and volume of withWorkspace(hello).
type workspaceEnv struct {
	*testEnv
	host    string
	machine reconcile.Resource
	volume  reconcile.Resource
}

func newWorkspaceEnv(t *testing.T) *workspaceEnv {
	t.Helper()
	e := newTestProvider(t, nil)
	packDir := filepath.Join(e.cache, "packs", refKey("agent:1"))
	if err := os.MkdirAll(packDir, 0o755); err != nil {
		t.Fatal(err)
	}
	packs(t, filepath.Join(packDir, "agent"))()
	w := &workspaceEnv{testEnv: e, host: t.TempDir()}
	rs, err := e.p.Desired([]*bottle.Bottle{withWorkspace(testBottle("hello"), w.host)}, nil)
	if err != nil || len(rs) != 2 || rs[0].Kind != kindMachine || rs[1].Kind != kindVolume {
		t.Fatalf("Desired = %v, %v; want the machine and its volume", rs, err)
	}
	w.machine, w.volume = rs[0], rs[1]
	return w
}

func (w *workspaceEnv) script(calls ...call) {
	f := w.p.cli.r.(*fakeRunner)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script, f.next = calls, 0
}

func (w *workspaceEnv) dataDir() string {
	return filepath.Join(w.state, "volumes", "hello", "cache", "data")
}

// createArgv is the create of the workspace machine.
func (w *workspaceEnv) createArgv(v string) []string {
	from := filepath.Join(w.cache, "packs", refKey("agent:1"), "agent.smolmachine")
	mounts := []string{"-v", w.host + ":/work", "-v", w.dataDir() + ":/cache", "-v", "/usr:/ref:ro"}
	if v == "0.8.0" {
		return cat(argv("machine", "create", "bottle-hello-agent", "--from", from), agentFlags, mounts)
	}
	labels := labelFlags(w.machine)
	labels = slices.Insert(labels, len(labels)-2, "--label", "io.bottle-apply.user=1000:1000")
	return cat(argv("machine", "create", "--name", "bottle-hello-agent", "--from", from), agentFlags, mounts,
		labels, []string{"--", "sleep", "infinity"})
}

func execArgv(cmd ...string) []string {
	return cat(argv("machine", "exec", "--name", "bottle-hello-agent", "-w", "/", "--"), cmd)
}

// mkdirsCall makes /home/agent/.config for 1000:1000.
var mkdirsCall = call{argv: execArgv("sh", "-c", mkdirScript, "sh", "1000:1000", "./home", "./home/agent", "./home/agent/.config")}

// checkTempFile checks, while cp runs, the temporary file it uploads (the
// argument before the NAME:PATH one): the content, mode 0600, in a private
// directory. It records the path for later checks.
func checkTempFile(t *testing.T, path *string) func([]string) {
	return func(argv []string) {
		src := argv[len(argv)-2]
		*path = src
		fi, err := os.Stat(src)
		if err != nil {
			t.Errorf("cp source: %v", err)
			return
		}
		b, _ := os.ReadFile(src)
		di, _ := os.Stat(filepath.Dir(src))
		if string(b) != plantedContent || fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
			t.Errorf("cp source: %q, %v in a %v directory; want the content, 0600, 0700", b, fi.Mode(), di.Mode())
		}
	}
}

// The volume first, then the machine with its mounts; files after start,
// by cp --mode/--uid/--gid on 1.9.
func TestCreateWorkspace19(t *testing.T) {
	t.Parallel()
	w := newWorkspaceEnv(t)
	if slices.Index(w.machine.DependsOn, w.volume.ID()) < 0 {
		t.Fatalf("the machine does not wait for its volume: %q", w.machine.DependsOn)
	}
	if err := w.p.Apply(t.Context(), createStep(w.volume)); err != nil {
		t.Fatal(err)
	}
	checkVolumeDir(t, w.dataDir())
	var tmp string
	w.script(
		version("1.9.3"),
		call{argv: w.createArgv("1.9.3")},
		call{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
		mkdirsCall,
		call{argv: argv("machine", "cp", "--mode", "0600", "--uid", "1000", "--gid", "1000", anyArg, "bottle-hello-agent:/home/agent/.config/x.json"),
			check: checkTempFile(t, &tmp)},
	)
	if err := w.p.Apply(t.Context(), createStep(w.machine)); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, filepath.Dir(tmp))
}

// Before 1.9, cp then chown and chmod in the machine; the user is in the
// record.
func TestCreateWorkspace08(t *testing.T) {
	t.Parallel()
	w := newWorkspaceEnv(t)
	if err := w.p.Apply(t.Context(), createStep(w.volume)); err != nil {
		t.Fatal(err)
	}
	var tmp string
	w.script(
		version("0.8.0"),
		call{argv: w.createArgv("0.8.0")},
		call{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
		mkdirsCall,
		call{argv: argv("machine", "cp", anyArg, "bottle-hello-agent:/home/agent/.config/x.json"), check: checkTempFile(t, &tmp)},
		call{argv: execArgv("chown", "1000:1000", "./home/agent/.config/x.json")},
		call{argv: execArgv("chmod", "0600", "./home/agent/.config/x.json")},
	)
	if err := w.p.Apply(t.Context(), createStep(w.machine)); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, filepath.Dir(tmp))
	rec, err := w.p.readRecord("bottle-hello-agent")
	if err != nil || rec == nil || rec.User != "1000:1000" {
		t.Errorf("record = %+v, %v; want user 1000:1000", rec, err)
	}
}

// A machine that cannot get its files goes: a later Start would not
// write them. The error names the path, never the content.
func TestCreateWorkspaceFilesFail(t *testing.T) {
	t.Parallel()
	w := newWorkspaceEnv(t)
	if err := w.p.Apply(t.Context(), createStep(w.volume)); err != nil {
		t.Fatal(err)
	}
	cp := argv("machine", "cp", "--mode", "0600", "--uid", "1000", "--gid", "1000", anyArg, "bottle-hello-agent:/home/agent/.config/x.json")
	w.script(
		version("1.9.3"),
		call{argv: w.createArgv("1.9.3")},
		call{argv: argv("machine", "start", "--name", "bottle-hello-agent")},
		mkdirsCall,
		call{argv: cp, err: smolErr("agent operation failed: write file: No space left on device", cp...)},
		call{argv: argv("machine", "stop", "--name", "bottle-hello-agent")},
		call{argv: argv("machine", "delete", "--name", "bottle-hello-agent", "-f")},
	)
	err := w.p.Apply(t.Context(), createStep(w.machine))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"write spec.agent.files /home/agent/.config/x.json into machine bottle-hello-agent",
		"No space left on device", "machine bottle-hello-agent was removed", "the next apply creates it again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), plantedContent) {
		t.Errorf("the error shows the file's content: %v", err)
	}
}

func TestCreateRefusesUnreadFiles(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil)
	b := withWorkspace(testBottle("hello"), t.TempDir())
	b.Files = nil
	if _, err := e.p.Desired([]*bottle.Bottle{b}, nil); err == nil || !strings.Contains(err.Error(), "spec.agent.files were not read") {
		t.Errorf("Desired = %v", err)
	}
}

// The machine cannot be made before its named volume is.
func TestCreateNeedsVolume(t *testing.T) {
	t.Parallel()
	w := newWorkspaceEnv(t)
	w.script(version("1.9.3"))
	err := w.p.Apply(t.Context(), createStep(w.machine))
	if err == nil || !strings.Contains(err.Error(), "volume cache is not ready") {
		t.Errorf("Apply = %v", err)
	}
	// Its data directory removed by hand: say how to start again.
	if err := w.p.Apply(t.Context(), createStep(w.volume)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(w.dataDir()); err != nil {
		t.Fatal(err)
	}
	w.script()
	err = w.p.Apply(t.Context(), createStep(w.machine))
	if err == nil || !strings.Contains(err.Error(), "the data directory of volume cache ("+w.dataDir()+") is missing; remove "+filepath.Dir(w.dataDir())) {
		t.Errorf("Apply = %v", err)
	}
}

// checkVolumeDir: 0700 parents, data writable for 1000:1000 (chowned as
// root, 0777 otherwise), and the record.
func checkVolumeDir(t *testing.T, data string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(data), filepath.Dir(filepath.Dir(data))} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want mode 0700", d, fi.Mode(), err)
		}
	}
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if os.Geteuid() == 0 && (st.Uid != 1000 || st.Gid != 1000) || os.Geteuid() != 0 && fi.Mode().Perm() != 0o777 {
		t.Errorf("data directory %v %d:%d, not writable for 1000:1000", fi.Mode(), st.Uid, st.Gid)
	}
	mustExist(t, filepath.Join(filepath.Dir(data), volumeRecordFile))
}

// A named volume lives in the state directory: a plain destroy keeps it
// (Plan.Kept), destroy --volumes deletes it after the machine.
func TestVolumeLifecycle(t *testing.T) {
	t.Parallel()
	w := newWorkspaceEnv(t)
	if err := w.p.Apply(t.Context(), createStep(w.volume)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dataDir(), "work.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	ls := `[{"name": "bottle-hello-agent", "state": "running", "labels": {"io.bottle-apply.name": "hello", "io.bottle-apply.role": "agent", "io.bottle-apply.config-hash": "` + w.machine.Hash + `"}}]`
	scope := reconcile.Scope{Bottles: []string{"hello"}}
	observe := func() []reconcile.Resource {
		t.Helper()
		w.script(call{argv: argv("machine", "ls", "--json"), stdout: ls})
		obs, err := w.p.Observe(t.Context(), scope)
		if err != nil {
			t.Fatal(err)
		}
		return obs
	}
	obs := observe()
	if got := describe(obs); !strings.Contains(got, "smolvm-volume:hello/cache bottle-hello-cache managed present") ||
		!strings.Contains(got, "deps=docker-network:hello/internal,docker-container:hello/bundle,smolvm-volume:hello/cache") {
		t.Errorf("observed:\n%s", got)
	}
	// Applying again changes nothing.
	if plan, err := reconcile.Diff([]reconcile.Resource{w.machine, w.volume}, obs, scope); err != nil || plan.Changes() != 0 {
		t.Errorf("plan %v, %v; want no changes", plan, err)
	}
	plan, err := reconcile.Diff(nil, obs, scope)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plan.String(), "#1 smolvm-machine:hello/agent Delete, not in spec\n"; got != want || len(plan.Kept) != 1 || plan.Kept[0].ID() != w.volume.ID() {
		t.Fatalf("destroy plan:\n%s(kept %v)\nwant:\n%s(kept the volume)", got, plan.Kept, want)
	}
	w.script(
		version("1.9.3"),
		call{argv: argv("machine", "stop", "--name", "bottle-hello-agent")},
		call{argv: argv("machine", "delete", "--name", "bottle-hello-agent", "-f")},
	)
	if err := w.p.Apply(t.Context(), plan.Steps[0]); err != nil {
		t.Fatal(err)
	}
	mustExist(t, filepath.Join(w.dataDir(), "work.txt"))

	// destroy --volumes: the machine first, then the volume.
	obs = observe()
	scope.RemovePersistent = true
	plan, err = reconcile.Diff(nil, obs, scope)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plan.String(), "#1 smolvm-machine:hello/agent Delete, not in spec\n#2 smolvm-volume:hello/cache Delete, not in spec, after #1\n"; got != want {
		t.Fatalf("destroy --volumes plan:\n%s\nwant:\n%s", got, want)
	}
	if err := w.p.Apply(t.Context(), plan.Steps[1]); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, filepath.Join(w.state, "volumes", "hello"))
}

// A directory without our record is never ours: not used, not removed.
func TestVolumeWithoutRecord(t *testing.T) {
	t.Parallel()
	w := newWorkspaceEnv(t)
	if err := os.MkdirAll(w.dataDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	scope := reconcile.Scope{Bottles: []string{"hello"}, RemovePersistent: true}
	w.script(call{argv: argv("machine", "ls", "--json"), stdout: "[]"})
	obs, err := w.p.Observe(t.Context(), scope)
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(obs); got != "smolvm-volume:hello/cache bottle-hello-cache unmanaged present\n" {
		t.Errorf("observed: %s", got)
	}
	if _, err := reconcile.Diff([]reconcile.Resource{w.machine, w.volume}, obs, scope); !errors.Is(err, reconcile.ErrNotManaged) {
		t.Errorf("apply plan: %v, want ErrNotManaged", err)
	}
	if plan, err := reconcile.Diff(nil, obs, scope); err != nil || plan.Changes() != 0 {
		t.Errorf("destroy --volumes plan %v, %v; want no changes", plan, err)
	}
	// Nor by hand-made steps.
	if err := w.p.Apply(t.Context(), createStep(w.volume)); !errors.Is(err, reconcile.ErrNotManaged) {
		t.Errorf("create over it: %v", err)
	}
	forged := w.volume
	forged.Managed = true
	if err := w.p.Apply(t.Context(), reconcile.Step{Action: reconcile.Delete, Resource: forged, Observed: &forged}); !errors.Is(err, reconcile.ErrNotManaged) {
		t.Errorf("delete: %v", err)
	}
	if err := w.p.Apply(t.Context(), reconcile.Step{Action: reconcile.Delete, Resource: obs[0], Observed: &obs[0]}); !errors.Is(err, reconcile.ErrNotManaged) {
		t.Errorf("delete of the observed: %v", err)
	}
	mustExist(t, w.dataDir())
}

// Observe under scope.All returns every managed machine and volume, with
// the same one ls; unmanaged ones only for the bottles named.
func TestObserveAll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		bottles []string
		all     bool
		ls      bool // whether machine ls runs
		want    []string
	}{
		{name: "nothing without all or bottles"},
		{name: "all", all: true, ls: true,
			want: []string{"smolvm-machine:forked/agent managed", "smolvm-machine:hello/agent managed", "smolvm-volume:hello/cache managed"}},
		{name: "all claims the namesakes of bottles", bottles: []string{"other", "stray"}, all: true, ls: true,
			want: []string{"smolvm-machine:forked/agent managed", "smolvm-machine:hello/agent managed", "smolvm-machine:other/ unmanaged",
				"smolvm-volume:hello/cache managed", "smolvm-volume:stray/junk unmanaged"}},
		{name: "bottles alone", bottles: []string{"other", "stray"}, ls: true,
			want: []string{"smolvm-machine:forked/agent managed", "smolvm-machine:hello/agent managed", "smolvm-machine:other/ unmanaged",
				"smolvm-volume:stray/junk unmanaged"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorkspaceEnv(t)
			if err := w.p.Apply(t.Context(), createStep(w.volume)); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(w.state, "volumes", "stray", "junk"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.ls {
				w.script(call{argv: argv("machine", "ls", "--json"), stdout: string(readTestdata(t, "ls-1.9.3.json"))})
			} else {
				w.script()
			}
			obs, err := w.p.Observe(t.Context(), reconcile.Scope{Bottles: tt.bottles, All: tt.all})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range obs {
				m := " unmanaged"
				if r.Managed {
					m = " managed"
				}
				got = append(got, r.ID()+m)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("observed:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}

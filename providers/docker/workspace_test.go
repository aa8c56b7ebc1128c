package docker

import (
	"archive/tar"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// existingDirs are two directories every machine has, symlinks resolved:
// what spec.Load leaves in Volume.HostPath, which the provider looks at
// again before it mounts it.
var existingDirs = sync.OnceValue(func() [2]string {
	tmp, err1 := filepath.EvalSymlinks(os.TempDir())
	wd, err2 := os.Getwd()
	if err2 == nil {
		wd, err2 = filepath.EvalSymlinks(wd)
	}
	if err1 != nil || err2 != nil {
		panic(fmt.Sprint(err1, err2))
	}
	return [2]string{tmp, wd}
})

// workspaceBottle is hello with a named volume (mounted twice), a host
// directory, a read-only one, a user and a file.
func workspaceBottle() *bottle.Bottle {
	b := helloBottle()
	a := &b.Spec.Agent
	a.User = "1000"
	a.Volumes = []spec.Volume{
		{Source: "./src", Target: "/workspace", HostPath: existingDirs()[0]},
		{Source: "work", Target: "/home/agent"},
		{Source: "work", Target: "/cache", ReadOnly: true},
		{Source: "/data", Target: "/data", ReadOnly: true, HostPath: existingDirs()[1]},
	}
	a.Files = []spec.File{{Path: "/home/agent/.cfg/x.json", Content: "{}", Mode: "0600"}}
	b.Files = []bottle.File{{Path: "/home/agent/.cfg/x.json", Content: []byte("{}"), Mode: 0o600, UID: 1000, GID: 1000, Digest: "d1"}}
	return b
}

func TestTranslateWorkspace(t *testing.T) {
	t.Parallel()
	base := byRole(translate(helloBottle(), "img", "v"))
	rs := byRole(translate(workspaceBottle(), "img", "v"))
	if len(rs) != 5 {
		t.Fatalf("translate made %d resources, want 5: one volume for two mounts of it", len(rs))
	}
	agent := rs[bottle.RoleAgent]
	cfg := agent.Config.(containerConfig)
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: existingDirs()[0], Target: "/workspace"},
		{Type: mount.TypeVolume, Source: "bottle-hello-work", Target: "/home/agent"},
		{Type: mount.TypeVolume, Source: "bottle-hello-work", Target: "/cache", ReadOnly: true},
		{Type: mount.TypeBind, Source: existingDirs()[1], Target: "/data", ReadOnly: true},
	}
	config, host, _ := containerSpec(cfg)
	if !reflect.DeepEqual(host.Mounts, wantMounts) {
		t.Errorf("mounts = %+v\nwant %+v", host.Mounts, wantMounts)
	}
	if len(host.Binds) != 0 {
		t.Errorf("binds = %q: a missing host directory would be made", host.Binds)
	}
	if config.User != "1000:1000" || config.Labels[LabelUser] != "1000:1000" || cfg.UID != 1000 || cfg.GID != 1000 {
		t.Errorf("user = %q, label %q, ids %d:%d; want 1000:1000", config.User, config.Labels[LabelUser], cfg.UID, cfg.GID)
	}
	if want := []volumeMount{{"bottle-hello-work", "/home/agent", false}, {"bottle-hello-work", "/cache", true}}; !reflect.DeepEqual(cfg.Volumes, want) {
		t.Errorf("volumes = %v, want %v", cfg.Volumes, want)
	}
	if len(cfg.Files) != 1 || cfg.Files[0].Path != "/home/agent/.cfg/x.json" {
		t.Errorf("files = %v", cfg.Files)
	}
	wantDeps := []string{"docker-network:hello/internal", "docker-volume:hello/work"}
	if !reflect.DeepEqual(agent.DependsOn, wantDeps) || !reflect.DeepEqual(agent.BoundTo, []string{"docker-network:hello/internal"}) {
		t.Errorf("agent depends on %v, bound to %v; want %v and the network only", agent.DependsOn, agent.BoundTo, wantDeps)
	}
	// The inputs: the old ones unchanged, three new ones.
	for k, v := range base[bottle.RoleAgent].Inputs {
		if agent.Inputs[k] != v {
			t.Errorf("input %s changed with the workspace", k)
		}
	}
	for _, k := range []string{"volumes", "user", "files"} {
		if _, ok := agent.Inputs[k]; !ok {
			t.Errorf("no %q input", k)
		}
		if _, ok := base[bottle.RoleAgent].Inputs[k]; ok {
			t.Errorf("input %q without a workspace: the pinned hash would change", k)
		}
	}
	if _, ok := base[bottle.RoleAgent].Config.(containerConfig).Labels[LabelUser]; ok {
		t.Error("user label without spec.agent.user")
	}

	v := rs["work"]
	if v.ID() != "docker-volume:hello/work" || v.Name != "bottle-hello-work" || !v.Persistent {
		t.Errorf("volume = %s %s persistent=%v", v.ID(), v.Name, v.Persistent)
	}
	vc := v.Config.(volumeConfig)
	if vc.Name != v.Name || vc.Labels[bottle.LabelName] != "hello" || vc.Labels[bottle.LabelRole] != "work" ||
		!bottle.Owned(vc.Labels[bottle.LabelName], vc.Labels[bottle.LabelRole], vc.Labels[bottle.LabelHash]) {
		t.Errorf("volume labels = %v", vc.Labels)
	}
	// A volume's hash is its name alone: nothing in the spec replaces it.
	other := workspaceBottle()
	other.Spec.Agent.Image, other.Spec.Agent.User = "agent:2", "0"
	if h := byRole(translate(other, "img2", "v2"))["work"].Hash; h != v.Hash {
		t.Error("the volume's hash changed with the agent")
	}

	// A smolvm bottle's volumes are the smolvm provider's.
	sm := workspaceBottle()
	sm.Spec.Backend = spec.BackendSmolvm
	for _, r := range translate(sm, "img", "v") {
		if r.Kind == KindVolume {
			t.Errorf("a smolvm bottle got %s", r.ID())
		}
	}
}

// Each input changes alone and says so: the plan's reason.
func TestWorkspaceInputs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, want string
		edit       func(b *bottle.Bottle)
	}{
		{"user", "user", func(b *bottle.Bottle) { b.Spec.Agent.User = "1001" }},
		{"same user, other form", "", func(b *bottle.Bottle) { b.Spec.Agent.User = "1000:1000" }},
		{"read-only", "volumes", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].ReadOnly = true }},
		{"host directory", "volumes", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].HostPath = "/elsewhere" }},
		{"volume name", "volumes", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[1].Source = "work2" }},
		{"file", "files", func(b *bottle.Bottle) { b.Files[0].Digest = "d2" }},
		{"no user", "user (gone)", func(b *bottle.Bottle) { b.Spec.Agent.User = "" }},
		{"no files", "files (gone)", func(b *bottle.Bottle) { b.Spec.Agent.Files, b.Files = nil, nil }},
		{"no volumes", "volumes (gone)", func(b *bottle.Bottle) { b.Spec.Agent.Volumes = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			was := byRole(translate(workspaceBottle(), "img", "v"))[bottle.RoleAgent]
			b := workspaceBottle()
			tt.edit(b)
			now := byRole(translate(b, "img", "v"))[bottle.RoleAgent]
			// Inputs that appear, change or disappear, as the plan's
			// reason names them.
			var changed []string
			for _, k := range slices.Sorted(maps.Keys(now.Inputs)) {
				if was.Inputs[k] != now.Inputs[k] {
					changed = append(changed, k)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(was.Inputs)) {
				if _, ok := now.Inputs[k]; !ok {
					changed = append(changed, k+" (gone)")
				}
			}
			if got := strings.Join(changed, ","); got != tt.want {
				t.Errorf("changed inputs = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAgentKeeps(t *testing.T) {
	t.Parallel()
	plain := byRole(translate(helloBottle(), "img", "v"))[bottle.RoleAgent]
	if plain.Keeps != "the bottle's networks and bundle" || plain.Discards != "the agent's processes, and every file written in its container" {
		t.Errorf("without a workspace: keeps %q, discards %q", plain.Keeps, plain.Discards)
	}
	ws := byRole(translate(workspaceBottle(), "img", "v"))[bottle.RoleAgent]
	wantKeeps := "the bottle's networks and bundle, and the files in /workspace (./src on the host), /home/agent (volume bottle-hello-work), " +
		"/cache (volume bottle-hello-work), /data (/data on the host)"
	wantDiscards := "the agent's processes, and every file written in its container outside them; spec.agent.files are written again"
	if ws.Keeps != wantKeeps || ws.Discards != wantDiscards {
		t.Errorf("keeps %q\nwant  %q\ndiscards %q\nwant     %q", ws.Keeps, wantKeeps, ws.Discards, wantDiscards)
	}
}

func TestDesiredRefusesUnreadWorkspace(t *testing.T) {
	t.Parallel()
	p := newProvider(newFakeEngine(), Options{BundleImage: bundleRef})
	unread := workspaceBottle()
	unread.Files = nil
	unresolved := workspaceBottle()
	unresolved.Spec.Agent.Volumes[0].HostPath = ""
	for name, b := range map[string]*bottle.Bottle{"files": unread, "host directory": unresolved} {
		if _, err := p.Desired([]*bottle.Bottle{b}, nil); err == nil || !strings.HasPrefix(err.Error(), "internal: bottle hello:") {
			t.Errorf("%s: Desired error = %v", name, err)
		}
	}
}

// The agent's files go in one tar at "/" between create and start: with
// the missing parents only, and the root of each writable named volume,
// made in this run or before (a run that made the volume may have stopped
// before the agent).
func TestApplyWritesFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		exists    []string // paths the container has
		observed  bool     // the volume was there before the run
		wantDirs  []string // "name uid:gid mode"
		wantCalls []string
	}{
		{
			name:     "new volume",
			exists:   []string{"/home/agent"},
			wantDirs: []string{"home/agent/ 1000:1000 755", "home/agent/.cfg/ 1000:1000 755"},
		},
		{
			name:     "volume of an earlier run",
			exists:   []string{"/home/agent"},
			observed: true,
			wantDirs: []string{"home/agent/ 1000:1000 755", "home/agent/.cfg/ 1000:1000 755"},
		},
		{
			name:     "parents exist",
			exists:   []string{"/home/agent", "/home/agent/.cfg"},
			observed: true,
			wantDirs: []string{"home/agent/ 1000:1000 755"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			f.images["agent:1"], f.images[bundleRef] = true, true
			for _, p := range tt.exists {
				f.paths[p] = true
			}
			b := workspaceBottle()
			if tt.observed {
				v := byRole(translate(b, bundleRef, "v"))["work"]
				f.volumes[v.Name] = volume.Volume{Name: v.Name, Labels: v.Config.(volumeConfig).Labels}
			}
			p := newProvider(f, Options{BundleImage: bundleRef})
			if _, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, []bottle.Bottle{*b}, reconcile.Options{}); err != nil {
				t.Fatal(err)
			}
			if len(f.copies) != 1 {
				t.Fatalf("copies = %d, want 1", len(f.copies))
			}
			c := f.copies[0]
			var dirs []string
			var files []tar.Header
			for _, h := range c.headers {
				if h.Typeflag == tar.TypeDir {
					dirs = append(dirs, fmt.Sprintf("%s %d:%d %o", h.Name, h.Uid, h.Gid, h.Mode))
				} else {
					files = append(files, h)
				}
			}
			if c.to != "id-bottle-hello-agent /" || !slices.Equal(dirs, tt.wantDirs) {
				t.Errorf("copied to %q dirs %q, want / and %q", c.to, dirs, tt.wantDirs)
			}
			if len(files) != 1 || files[0].Name != "home/agent/.cfg/x.json" || files[0].Mode != 0o600 || files[0].Uid != 1000 ||
				c.content["home/agent/.cfg/x.json"] != "{}" {
				t.Errorf("files = %+v", files)
			}
			// Between the create and the start.
			calls := f.callLog()
			create := slices.Index(calls, "ContainerCreate bottle-hello-agent")
			cp := slices.Index(calls, "CopyToContainer id-bottle-hello-agent /")
			start := slices.Index(calls, "ContainerStart id-bottle-hello-agent")
			if create < 0 || cp < create || start < cp {
				t.Errorf("create %d, copy %d, start %d: the files must be there before the start", create, cp, start)
			}
		})
	}
}

func TestCreateVolumeRefusesOthers(t *testing.T) {
	t.Parallel()
	r := byRole(translate(workspaceBottle(), "img", "v"))["work"]
	mine := r.Config.(volumeConfig).Labels
	tests := []struct {
		name    string
		labels  map[string]string // of the volume already there; nil: none
		wantErr string
	}{
		{name: "new"},
		{name: "ours already", labels: mine},
		{name: "foreign", labels: map[string]string{"x": "y"}, wantErr: "volume bottle-hello-work exists and is not bottle-apply's"},
		{name: "another bottle's", labels: managedLabels("hello-x", "work", "h"), wantErr: "volume bottle-hello-work exists and belongs to bottle hello-x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			if tt.labels != nil {
				f.volumes[r.Name] = volume.Volume{Name: r.Name, Labels: tt.labels}
			}
			p := newProvider(f, Options{})
			err := p.Apply(t.Context(), step(reconcile.Create, r))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("create: %v, want %q", err, tt.wantErr)
			}
			if tt.labels != nil && !reflect.DeepEqual(f.volumes[r.Name].Labels, tt.labels) {
				t.Errorf("the volume's labels changed")
			}
		})
	}
}

func TestRemoveVolume(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.fail["VolumeRemove"] = wrapped(cerrdefs.ErrConflict, "volume is in use")
	p := newProvider(f, Options{})
	obs := observedRes(KindVolume, "work", "bottle-hello-work", true)
	obs.Name = "bottle-hello-work"
	err := p.Apply(t.Context(), reconcile.Step{Action: reconcile.Delete, Resource: obs, Observed: &obs})
	if err == nil || !strings.Contains(err.Error(), "a container that is not the bottle's agent uses it") {
		t.Errorf("remove of a volume in use: %v", err)
	}
	obs.Managed = false
	err = p.Apply(t.Context(), reconcile.Step{Action: reconcile.Delete, Resource: obs, Observed: &obs})
	if !errors.Is(err, reconcile.ErrNotManaged) || f.count("VolumeRemove") != 1 {
		t.Errorf("remove of an unmanaged volume: %v, %d calls", err, f.count("VolumeRemove"))
	}
}

// destroy --volumes removes the agent before its volume: the observed
// agent depends on the volumes it mounts.
func TestDestroyVolumesAfterTheAgent(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.images["agent:1"], f.images[bundleRef] = true, true
	p := newProvider(f, Options{BundleImage: bundleRef})
	b := []bottle.Bottle{*workspaceBottle()}
	if _, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, b, reconcile.Options{}); err != nil {
		t.Fatal(err)
	}
	rs, err := p.Observe(t.Context(), reconcile.Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Role == bottle.RoleAgent && !slices.Contains(r.DependsOn, "docker-volume:hello/work") {
			t.Errorf("the observed agent depends on %v, not its volume", r.DependsOn)
		}
	}
	res, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, b, reconcile.Options{Destroy: true})
	if err != nil || len(res.Plan.Kept) != 1 || len(f.volumes) != 1 {
		t.Fatalf("destroy: %v, kept %v, volumes left %d", err, res.Plan.Kept, len(f.volumes))
	}
	if _, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, b, reconcile.Options{Destroy: true, Volumes: true}); err != nil || len(f.volumes) != 0 {
		t.Fatalf("destroy --volumes: %v, volumes left %d", err, len(f.volumes))
	}
	// Again from a running bottle: the agent goes first.
	if _, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, b, reconcile.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, b, reconcile.Options{Destroy: true, Volumes: true, MaxRounds: 1}); err != nil {
		t.Fatalf("destroy --volumes of a running bottle: %v", err)
	}
	calls := f.callLog()
	agent := slices.Index(calls, "ContainerRemove id-bottle-hello-agent")
	vol := slices.Index(calls[max(agent, 0):], "VolumeRemove bottle-hello-work")
	if agent < 0 || vol < 0 || len(f.volumes) != 0 {
		t.Errorf("the volume was not removed after the agent:\n%s", strings.Join(calls, "\n"))
	}
}

// An agent left created (a run cut short before its start) gets its
// files before the start that the next run makes.
func TestStartOfCreatedAgentWritesFiles(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	p := newProvider(f, Options{})
	r := byRole(translate(workspaceBottle(), "img", "v"))[bottle.RoleAgent]
	f.containers[r.Name] = container.Summary{ID: "id-" + r.Name, Names: []string{"/" + r.Name}, State: "created"}
	obs := observedRes(KindContainer, bottle.RoleAgent, "id-"+r.Name, true)
	for _, state := range []reconcile.State{reconcile.StateStopped, reconcile.StateCreated} {
		obs.State = state
		s := step(reconcile.Start, r)
		s.Observed = &obs
		if err := p.Apply(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	// Once: a stopped agent keeps what it made of its files.
	want := []string{"ContainerStart id-bottle-hello-agent", "ContainerStatPath id-bottle-hello-agent /home/agent/.cfg",
		"ContainerStatPath id-bottle-hello-agent /home/agent", "ContainerStatPath id-bottle-hello-agent /home",
		"CopyToContainer id-bottle-hello-agent /", "ContainerStart id-bottle-hello-agent"}
	if got := f.callLog(); !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A volume is ours only under the name it was made with: a copy that
// carries its labels is left alone, even by destroy --volumes.
func TestObservedVolumesOwnership(t *testing.T) {
	t.Parallel()
	ours := bottle.Labels("hello", "work", "h", "", "v")
	vols := []*volume.Volume{
		{Name: "bottle-hello-work", Labels: ours, CreatedAt: "2026-12-05T06:00:00Z"},
		{Name: "bottle-hello-work-backup", Labels: ours},
		{Name: "bottle-hello-cache"},
		{Name: "bottle-other-work", Labels: bottle.Labels("other", "work", "h", "", "v")},
	}
	rs := observedVolumes(vols, reconcile.Scope{Bottles: []string{"hello"}})
	got := map[string]bool{}
	for _, r := range rs {
		got[r.Name] = r.Managed
	}
	want := map[string]bool{"bottle-hello-work": true, "bottle-hello-work-backup": false, "bottle-hello-cache": false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("managed = %v, want %v", got, want)
	}
	for _, r := range rs {
		if r.Name == "bottle-hello-work" && !r.Created.Equal(time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)) {
			t.Errorf("created %v, want the engine's CreatedAt", r.Created)
		}
	}
	plan, err := reconcile.Diff(nil, rs, reconcile.Scope{Bottles: []string{"hello"}, RemovePersistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := plan.String(); s != "#1 docker-volume:hello/work Delete, not in spec\n" {
		t.Errorf("destroy --volumes plan:\n%s", s)
	}
	if len(plan.Warnings) != 2 || !strings.Contains(strings.Join(plan.Warnings, "\n"), `"bottle-hello-work-backup" has the name or label of bottle "hello" but is not managed`) {
		t.Errorf("warnings: %q", plan.Warnings)
	}
}

// A host directory that became a symlink after the spec was checked is
// not mounted: the engine would follow it anywhere.
func TestCheckBindsRefusesASwappedPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "cache")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := containerConfig{Name: "bottle-x-agent", Mounts: []mount.Mount{{Type: mount.TypeBind, Source: real, Target: "/cache"}}}
	if err := checkBinds(cfg); err != nil {
		t.Fatalf("the checked directory: %v", err)
	}
	// The swap an agent with the parent directory could make.
	if err := os.Remove(real); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, real); err != nil {
		t.Fatal(err)
	}
	err := checkBinds(cfg)
	if err == nil || !strings.Contains(err.Error(), "now leads to "+elsewhere) {
		t.Fatalf("a swapped path: %v", err)
	}
	if err := os.Remove(real); err != nil {
		t.Fatal(err)
	}
	if err := checkBinds(cfg); err == nil || !strings.Contains(err.Error(), "make it again") {
		t.Fatalf("a removed path: %v", err)
	}
}

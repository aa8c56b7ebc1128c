package smolvm

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

const plantedContent = "file-content-7c1f9e"

// withWorkspace gives a bottle a user, a host directory (resolved to
// host), a named volume, a read-only host directory and one resolved file.
func withWorkspace(b *bottle.Bottle, host string) *bottle.Bottle {
	a := &b.Spec.Agent
	a.User = "1000"
	a.Volumes = []spec.Volume{
		{Source: "./src", Target: "/work", HostPath: host},
		{Source: "cache", Target: "/cache"},
		{Source: "/usr", Target: "/ref", ReadOnly: true, HostPath: "/usr"},
	}
	a.Files = []spec.File{{Path: "/home/agent/.config/x.json", Content: plantedContent, Mode: "0600"}}
	b.Files = []bottle.File{{Path: "/home/agent/.config/x.json", Content: []byte(plantedContent), Mode: 0o600,
		UID: 1000, GID: 1000, Digest: "digest-1"}}
	return b
}

func TestTranslateWorkspace(t *testing.T) {
	t.Parallel()
	base, _ := translate(testBottle("hello"), "test", "")
	r, err := translate(withWorkspace(testBottle("hello"), "/home/u/src"), "test", "")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range base.Inputs {
		if r.Inputs[k] != v {
			t.Errorf("input %s changed with a workspace", k)
		}
	}
	for _, k := range []string{"volumes", "user", "files"} {
		if r.Inputs[k] == "" {
			t.Errorf("no %s input: %v", k, r.Inputs)
		}
	}
	if len(r.Inputs) != len(base.Inputs)+3 {
		t.Errorf("inputs %v, want three more than %v", r.Inputs, base.Inputs)
	}
	cfg := r.Config.(machineConfig)
	wantMounts := []mount{{Host: "/home/u/src", Target: "/work"}, {Volume: "cache", Target: "/cache"}, {Host: "/usr", Target: "/ref", ReadOnly: true}}
	if !reflect.DeepEqual(cfg.Mounts, wantMounts) {
		t.Errorf("Mounts = %+v, want %+v", cfg.Mounts, wantMounts)
	}
	if cfg.User != "1000:1000" || cfg.Labels[labelUser] != "1000:1000" || cfg.Record.User != "1000:1000" || r.Summary["user"] != "1000:1000" {
		t.Errorf("user: config %q, label %q, record %q, summary %q; want 1000:1000", cfg.User, cfg.Labels[labelUser], cfg.Record.User, r.Summary["user"])
	}
	if len(cfg.Files) != 1 || string(cfg.Files[0].Content) != plantedContent {
		t.Errorf("Files = %v", cfg.Files)
	}
	if want := append(slices.Clone(base.DependsOn), "smolvm-volume:hello/cache"); !slices.Equal(r.DependsOn, want) {
		t.Errorf("DependsOn = %q, want %q", r.DependsOn, want)
	}
	if want := "the bottle's networks and bundle; /home/u/src at /work, volume cache at /cache, /usr at /ref"; r.Keeps != want {
		t.Errorf("Keeps = %q, want %q", r.Keeps, want)
	}
	if want := "the machine's processes, and every file written in it outside /work, /cache, /ref (spec.agent.files are written again)"; r.Discards != want {
		t.Errorf("Discards = %q, want %q", r.Discards, want)
	}
	if all := fmt.Sprint(r.Summary, r.Inputs, cfg.Labels, cfg.Record, r.Hash, r.Keeps, r.Discards); strings.Contains(all, plantedContent) {
		t.Errorf("a file's content shows outside Files: %s", all)
	}
	// Unset or empty, the workspace leaves the hash as it was (the pinned
	// hash of TestTranslate).
	empty := testBottle("hello")
	empty.Spec.Agent.Volumes, empty.Spec.Agent.Files, empty.Files = []spec.Volume{}, []spec.File{}, []bottle.File{}
	if e, _ := translate(empty, "test", ""); e.Hash != base.Hash || !reflect.DeepEqual(e.Inputs, base.Inputs) {
		t.Error("an empty workspace changes the hash")
	}
	if _, ok := base.Config.(machineConfig).Labels[labelUser]; ok {
		t.Error("a machine without a user has a user label")
	}
}

func TestTranslateWorkspaceInputs(t *testing.T) {
	t.Parallel()
	base, _ := translate(withWorkspace(testBottle("hello"), "/home/u/src"), "test", "")
	tests := []struct {
		name    string
		edit    func(b *bottle.Bottle)
		changed string
	}{
		{"gid spelled out", func(b *bottle.Bottle) { b.Spec.Agent.User = "1000:1000" }, ""},
		{"another user", func(b *bottle.Bottle) { b.Spec.Agent.User = "1001" }, "user"},
		{"another group", func(b *bottle.Bottle) { b.Spec.Agent.User = "1000:100" }, "user"},
		{"no user", func(b *bottle.Bottle) { b.Spec.Agent.User = "" }, "user"},
		{"read-only", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].ReadOnly = true }, "volumes"},
		{"host directory moved", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].HostPath = "/elsewhere" }, "volumes"},
		{"same directory, other spelling", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].Source = "./src/." }, ""},
		{"allowSensitive", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].AllowSensitive = true }, ""},
		{"target", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[1].Target = "/c" }, "volumes"},
		{"file content", func(b *bottle.Bottle) { b.Files[0].Digest = "digest-2" }, "files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := withWorkspace(testBottle("hello"), "/home/u/src")
			tt.edit(b)
			r, err := translate(b, "test", "")
			if err != nil {
				t.Fatal(err)
			}
			var changed []string
			for k := range mergeKeys(base.Inputs, r.Inputs) {
				if base.Inputs[k] != r.Inputs[k] {
					changed = append(changed, k)
				}
			}
			if got := strings.Join(changed, ","); got != tt.changed {
				t.Errorf("changed inputs = %q, want %q", got, tt.changed)
			}
			if tt.changed == "" {
				return
			}
			p, err := reconcile.Diff([]reconcile.Resource{r}, []reconcile.Resource{{Provider: base.Provider, Kind: base.Kind, Bottle: base.Bottle,
				Role: base.Role, Name: base.Name, Hash: base.Hash, Inputs: base.Inputs, Managed: true, State: reconcile.StateRunning}},
				reconcile.Scope{Bottles: []string{"hello"}})
			var reason string
			for _, s := range p.Steps {
				if s.Resource.Kind == kindMachine {
					reason = s.Reason
				}
			}
			if err != nil || reason != tt.changed+" changed" {
				t.Errorf("plan %v, %v; want a replace, %s changed", p, err, tt.changed)
			}
		})
	}
}

func TestTranslateWorkspaceErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(b *bottle.Bottle)
		want string
	}{
		{"files not read", func(b *bottle.Bottle) { b.Files = nil }, "internal: bottle hello: the files of spec.agent.files were not read"},
		{"host directory not resolved", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].HostPath = "" },
			"internal: bottle hello: spec.agent.volumes[0]: host directory ./src was not resolved"},
		{"colon", func(b *bottle.Bottle) { b.Spec.Agent.Volumes[0].HostPath = "/home/u/a:b" },
			"bottle hello: spec.agent.volumes[0]: smolvm cannot mount a path that holds a colon (./src:/work)"},
		{"bad user", func(b *bottle.Bottle) { b.Spec.Agent.User = "agent" }, "internal: bottle hello: spec.agent.user: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := withWorkspace(testBottle("hello"), "/home/u/src")
			tt.edit(b)
			if _, err := translate(b, "test", ""); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("translate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestVolumeArgs(t *testing.T) {
	t.Parallel()
	dataDir := func(vol string) string { return "/state/volumes/hello/" + vol + "/data" }
	tests := []struct {
		name string
		m    mount
		want string
	}{
		{"host directory", mount{Host: "/home/u/src", Target: "/work"}, "/home/u/src:/work"},
		{"host directory, read-only", mount{Host: "/usr", Target: "/ref", ReadOnly: true}, "/usr:/ref:ro"},
		{"named volume", mount{Volume: "cache", Target: "/cache"}, "/state/volumes/hello/cache/data:/cache"},
		{"named volume, read-only", mount{Volume: "cache", Target: "/c", ReadOnly: true}, "/state/volumes/hello/cache/data:/c:ro"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := volumeArgs([]mount{tt.m}, dataDir)
			if !slices.Equal(got, []string{tt.want}) {
				t.Errorf("volumeArgs = %q, want %q", got, tt.want)
			}
			args := createArgs(v193, createOpts{Name: "n", Image: "i", Volumes: got, Cmd: []string{"sh"}})
			if i := slices.Index(args, "-v"); i < 0 || args[i+1] != tt.want || slices.Index(args, "--") < i {
				t.Errorf("create argv %q: want -v %s before --", args, tt.want)
			}
		})
	}
	if got := volumeArgs(nil, dataDir); len(got) != 0 {
		t.Errorf("no mounts: %q", got)
	}
}

func TestTranslateVolumes(t *testing.T) {
	t.Parallel()
	b := withWorkspace(testBottle("hello"), "/home/u/src")
	b.Spec.Agent.Volumes = append(b.Spec.Agent.Volumes, spec.Volume{Source: "cache", Target: "/again"}, spec.Volume{Source: "build", Target: "/build"})
	rs := translateVolumes(b, "1000:1000", "test")
	var got []string
	for _, r := range rs {
		cfg := r.Config.(volumeConfig)
		got = append(got, fmt.Sprintf("%s %s persistent=%v hash=%v user=%s record=%s/%s/%s", r.ID(), r.Name, r.Persistent, r.Hash != "",
			cfg.User, cfg.Record.Name, cfg.Record.Bottle, cfg.Record.Volume))
	}
	want := []string{
		"smolvm-volume:hello/build bottle-hello-build persistent=true hash=true user=1000:1000 record=bottle-hello-build/hello/build",
		"smolvm-volume:hello/cache bottle-hello-cache persistent=true hash=true user=1000:1000 record=bottle-hello-cache/hello/cache",
	}
	if !slices.Equal(got, want) {
		t.Errorf("volumes:\n got  %q\n want %q", got, want)
	}
	if rs := translateVolumes(testBottle("hello"), "", "test"); len(rs) != 0 {
		t.Errorf("a bottle without volumes: %v", rs)
	}
}

package smolvm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/fakesmolvm/fakebin"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// fakeSmolvm is a provider over the fake smolvm executable (of one
// dialect, with its own state), through a wrapper script that sets the
// fake's environment, so that tests can run in parallel.
type fakeSmolvm struct {
	p                  *Provider
	bin, state, cache  string
	fakeState, version string
}

func newFakeSmolvm(t *testing.T, version string) *fakeSmolvm {
	t.Helper()
	f := &fakeSmolvm{fakeState: t.TempDir(), cache: t.TempDir(), state: t.TempDir(), version: version}
	f.bin = filepath.Join(t.TempDir(), "smolvm")
	script := fmt.Sprintf("#!/bin/sh\nFAKE_SMOLVM_STATE='%s' FAKE_SMOLVM_VERSION='%s' exec '%s' \"$@\"\n", f.fakeState, version, fakebin.Build(t))
	if err := os.WriteFile(f.bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f.p = New(ExecRunner{}, Options{Binary: f.bin, CacheDir: f.cache, StateDir: f.state, Version: "test"})
	// The image comes as a pack from the cache: no registry.
	packDir := filepath.Join(f.cache, "packs", refKey("agent:1"))
	if err := os.MkdirAll(packDir, 0o755); err != nil {
		t.Fatal(err)
	}
	packs(t, filepath.Join(packDir, "agent"))()
	return f
}

// apply plans desired against what is observed and applies each step in
// order (creates and deletes only: these tests replace nothing).
func (f *fakeSmolvm) apply(t *testing.T, desired []reconcile.Resource, scope reconcile.Scope) (*reconcile.Plan, error) {
	t.Helper()
	obs, err := f.p.Observe(t.Context(), scope)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := reconcile.Diff(desired, obs, scope)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan.Steps {
		if s.Action == reconcile.NoOp {
			continue
		}
		if err := f.p.Apply(t.Context(), s); err != nil {
			return plan, err
		}
	}
	return plan, nil
}

// argvLog is the fake's argv.log: one argv per smolvm run.
func (f *fakeSmolvm) argvLog(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.fakeState, "argv.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var a []string
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func (f *fakeSmolvm) lsJSON(t *testing.T) []map[string]any {
	t.Helper()
	out, err := f.p.cli.r.Run(t.Context(), f.bin, "machine", "ls", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var ms []map[string]any
	if err := json.Unmarshal(out, &ms); err != nil {
		t.Fatal(err)
	}
	return ms
}

// A bottle's workspace against the fake smolvm, in both dialects: the -v
// of each form, the files in place with their mode and owner once the
// machine runs, a named volume that outlives its machine.
func TestFakeWorkspace(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0.8.0", "1.9.3"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFakeSmolvm(t, v)
			host, ro := t.TempDir(), t.TempDir()
			b := withWorkspace(testBottle("hello"), host)
			b.Spec.Agent.Volumes[2].HostPath = ro
			// The test's own ids: the fake chowns on the host, which only
			// root may do for other ids.
			uid, gid := os.Getuid(), os.Getgid()
			b.Spec.Agent.User = fmt.Sprintf("%d:%d", uid, gid)
			b.Files[0].UID, b.Files[0].GID = uid, gid
			desired, err := f.p.Desired([]*bottle.Bottle{b}, nil)
			if err != nil {
				t.Fatal(err)
			}
			scope := reconcile.Scope{Bottles: []string{"hello"}}
			if _, err := f.apply(t, desired, scope); err != nil {
				t.Fatal(err)
			}
			data := f.p.VolumeDataDir("hello", "cache")
			wantV := []string{"-v", host + ":/work", "-v", data + ":/cache", "-v", ro + ":/ref:ro"}
			var create []string
			for _, a := range f.argvLog(t) {
				if len(a) > 1 && a[1] == "create" {
					create = a
				}
			}
			if i := slices.Index(create, "-v"); i < 0 || !slices.Equal(create[i:i+6], wantV) {
				t.Errorf("create argv %q: want %q", create, wantV)
			}
			m := f.lsJSON(t)[0]
			wantMounts := []any{
				map[string]any{"tag": "smolvm0", "source": host, "target": "/work", "readonly": false},
				map[string]any{"tag": "smolvm1", "source": data, "target": "/cache", "readonly": false},
				map[string]any{"tag": "smolvm2", "source": ro, "target": "/ref", "readonly": true},
			}
			if m["mounts"] != float64(3) || m["state"] != "running" || !reflect.DeepEqual(m["fake"].(map[string]any)["mounts"], wantMounts) {
				t.Errorf("ls --json: mounts %v (%v), state %v", m["mounts"], m["fake"].(map[string]any)["mounts"], m["state"])
			}

			root := filepath.Join(f.fakeState, "roots", "bottle-hello-agent")
			file := filepath.Join(root, "home", "agent", ".config", "x.json")
			got, err := os.ReadFile(file)
			if err != nil || string(got) != plantedContent {
				t.Fatalf("the file in the machine: %q, %v", got, err)
			}
			for path, mode := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o755} {
				fi, _ := os.Stat(path)
				st := fi.Sys().(*syscall.Stat_t)
				if fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
					t.Errorf("%s: %v %d:%d, want %v %d:%d", path, fi.Mode().Perm(), st.Uid, st.Gid, mode, uid, gid)
				}
			}

			// What the agent writes in its volume lands in the state
			// directory; the machine's user owns what cp brings.
			src := filepath.Join(t.TempDir(), "notes.txt")
			if err := os.WriteFile(src, []byte("notes"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := f.p.Guest("hello").CopyIn(t.Context(), src, "/cache/in/notes.txt"); err != nil {
				t.Fatal(err)
			}
			mustExist(t, filepath.Join(data, "in", "notes.txt"))

			// A plain destroy keeps the volume and its content.
			plan, err := f.apply(t, nil, scope)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Kept) != 1 || plan.Kept[0].ID() != "smolvm-volume:hello/cache" {
				t.Errorf("kept %v, want the volume", plan.Kept)
			}
			if ms := f.lsJSON(t); len(ms) != 0 {
				t.Errorf("machines left: %v", ms)
			}
			mustExist(t, filepath.Join(data, "in", "notes.txt"))
			mustExist(t, filepath.Join(ro))
			// It comes back with the bottle, content and all.
			if _, err := f.apply(t, desired, scope); err != nil {
				t.Fatal(err)
			}
			mustExist(t, filepath.Join(root, "cache", "in", "notes.txt"))
			// destroy --volumes removes it.
			scope.RemovePersistent = true
			if _, err := f.apply(t, nil, scope); err != nil {
				t.Fatal(err)
			}
			mustNotExist(t, filepath.Join(f.state, "volumes", "hello"))
			mustExist(t, host)
		})
	}
}

// smolvm refuses a host directory that does not exist, and says which.
func TestFakeMissingHostDir(t *testing.T) {
	t.Parallel()
	f := newFakeSmolvm(t, "1.9.3")
	gone := filepath.Join(t.TempDir(), "gone")
	b := testBottle("hello")
	b.Spec.Agent.Volumes = []spec.Volume{{Source: "./gone", Target: "/work", HostPath: gone}}
	desired, err := f.p.Desired([]*bottle.Bottle{b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.apply(t, desired, reconcile.Scope{Bottles: []string{"hello"}})
	// The provider looks before smolvm would (and refuses a path that
	// became a symlink, which smolvm would follow).
	if err == nil || !strings.Contains(err.Error(), "host directory "+gone+": lstat "+gone+": no such file or directory; make it again") {
		t.Errorf("apply = %v", err)
	}
	if ms := f.lsJSON(t); len(ms) != 0 {
		t.Errorf("machines: %v", ms)
	}
}

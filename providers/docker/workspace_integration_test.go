package docker

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// cleanupVolume removes the volume name when the test ends, with any
// container left using it (testenv.CleanupBottle knows no volumes).
func cleanupVolume(t *testing.T, c *client.Client, name string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cs, _ := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("volume", name))})
		for _, x := range cs {
			_ = c.ContainerRemove(ctx, x.ID, container.RemoveOptions{Force: true})
		}
		_ = c.VolumeRemove(ctx, name, true)
	})
}

// execOut runs cmd in the guest and returns its exit code and output.
func execOut(t *testing.T, g guest.Guest, user string, cmd ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code, err := g.Exec(t.Context(), guest.ExecOptions{Cmd: cmd, User: user}, guest.Stdio{Out: &out, Err: &out})
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	return code, strings.TrimSpace(out.String())
}

// TestIntegrationWorkspace makes an agent with a named volume, a host
// directory, a read-only one, a user and a file, and looks at what the
// agent gets.
func TestIntegrationWorkspace(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	b := e.newBottle(t, "")
	name := b.Metadata.Name
	vol := bottle.VolumeName(name, "work")
	cleanupVolume(t, e.c, vol)
	src, ro := t.TempDir(), t.TempDir()
	// The user's own directory: bottle-apply never changes its owner.
	if err := os.Chown(src, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	a := &b.Spec.Agent
	a.User = "1000"
	a.Volumes = []spec.Volume{
		{Source: "work", Target: "/home/agent"},
		// The same volume, read-only: its root is given through the
		// other mount.
		{Source: "work", Target: "/cache", ReadOnly: true},
		{Source: "./src", Target: "/workspace", HostPath: src},
		{Source: "./ro", Target: "/ro", ReadOnly: true, HostPath: ro},
	}
	a.Files = []spec.File{{Path: "/home/agent/.cfg/x.json", Content: "{}", Mode: "0600"}}
	b.Files = []bottle.File{{Path: "/home/agent/.cfg/x.json", Content: []byte(`{"k":1}`), Mode: 0o600, UID: 1000, GID: 1000, Digest: "d1"}}

	res := e.run(t, []bottle.Bottle{b}, false)
	if res.Plan.Count(reconcile.Create) != 5 {
		t.Fatalf("first apply:\n%s", res.Plan)
	}
	v, err := e.c.VolumeInspect(t.Context(), vol)
	if err != nil || v.Labels[bottle.LabelName] != name || v.Labels[bottle.LabelRole] != "work" {
		t.Fatalf("volume %s: %+v, %v", vol, v.Labels, err)
	}
	g, err := e.p.Guest(t.Context(), name, bottle.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	// The container's user is the default of an exec; ExecOptions.User
	// overrides it.
	if _, out := execOut(t, g, "", "id", "-u"); out != "1000" {
		t.Errorf("exec runs as uid %q, want 1000 (spec.agent.user)", out)
	}
	if _, out := execOut(t, g, "0", "id", "-u"); out != "0" {
		t.Errorf("exec with User 0 runs as uid %q", out)
	}
	// The file, its missing parent and the new volume's root, as the
	// agent sees them before its command ever ran.
	for p, want := range map[string]string{
		"/home/agent/.cfg/x.json": "1000:1000 600",
		"/home/agent/.cfg":        "1000:1000 755",
		"/home/agent":             "1000:1000 755",
	} {
		if _, out := execOut(t, g, "0", "busybox", "stat", "-c", "%u:%g %a", p); out != want {
			t.Errorf("stat %s = %q, want %q", p, out, want)
		}
	}
	if _, out := execOut(t, g, "", "cat", "/home/agent/.cfg/x.json"); out != `{"k":1}` {
		t.Errorf("the file holds %q", out)
	}
	// What the agent writes into the host directory is its user's.
	if code, out := execOut(t, g, "", "sh", "-c", "echo hi > /workspace/out && echo ok > /home/agent/mine"); code != 0 {
		t.Fatalf("the agent cannot write its workspace: %d %s", code, out)
	}
	st, err := os.Stat(filepath.Join(src, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 1000 {
		t.Errorf("a file the agent wrote into the host directory belongs to uid %d, want 1000", uid)
	}
	// Read-only, even for root.
	if code, _ := execOut(t, g, "0", "sh", "-c", "echo x > /ro/f"); code == 0 {
		t.Error("a write into the read-only host directory succeeded")
	}
	if code, _ := execOut(t, g, "0", "sh", "-c", "echo x > /cache/f"); code == 0 {
		t.Error("a write into the read-only mount of the volume succeeded")
	}
	if _, out := execOut(t, g, "", "cat", "/cache/mine"); out != "ok" {
		t.Errorf("the read-only mount of the volume shows %q, want what the agent wrote", out)
	}
	if _, err := os.Stat(filepath.Join(ro, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the read-only host directory got a file: %v", err)
	}
	// cp writes as the agent's user, and so are the parents it makes.
	hostFile := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(hostFile, []byte("in"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.CopyIn(t.Context(), hostFile, "/home/agent/new/in.txt"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/home/agent/new", "/home/agent/new/in.txt"} {
		if _, out := execOut(t, g, "0", "busybox", "stat", "-c", "%u:%g", p); out != "1000:1000" {
			t.Errorf("after cp, %s belongs to %q, want 1000:1000", p, out)
		}
	}

	// A second apply changes nothing, with one list of each kind.
	e.cnt.Reset()
	if res := e.run(t, []bottle.Bottle{b}, false); res.Plan.Changes() != 0 {
		t.Fatalf("second apply planned:\n%s", res.Plan)
	}
	calls := e.cnt.Reset()
	slices.Sort(calls)
	if want := []string{"GET /containers/json", "GET /images/json", "GET /networks", "GET /volumes"}; !slices.Equal(calls, want) {
		t.Errorf("no-op apply calls = %q, want %q", calls, want)
	}
	// A new agent keeps what is on the volume, and its new file is in
	// place; the volume's root is not given again.
	a.Env = map[string]string{"FOO": "new"}
	wantSteps(t, e.run(t, []bottle.Bottle{b}, false), "Replace agent: env changed")
	if g, err = e.p.Guest(t.Context(), name, bottle.RoleAgent); err != nil {
		t.Fatal(err)
	}
	if _, out := execOut(t, g, "", "cat", "/home/agent/mine", "/home/agent/.cfg/x.json"); out != "ok\n"+`{"k":1}` {
		t.Errorf("after the replace, the volume holds %q", out)
	}

	// Destroy keeps the volume; destroy --volumes removes it.
	res = e.run(t, []bottle.Bottle{b}, true)
	if len(res.Plan.Kept) != 1 || res.Plan.Kept[0].Name != vol {
		t.Fatalf("destroy kept %v, want the volume", res.Plan.Kept)
	}
	if _, err := e.c.VolumeInspect(t.Context(), vol); err != nil {
		t.Fatalf("destroy removed the volume: %v", err)
	}
	// From a running bottle: the agent goes before its volume.
	e.run(t, []bottle.Bottle{b}, false)
	res, err = reconcile.Run(t.Context(), []reconcile.Provider{e.p}, []bottle.Bottle{b}, reconcile.Options{Destroy: true, Volumes: true})
	if err != nil || res.Plan.Count(reconcile.Delete) != 5 {
		t.Fatalf("destroy --volumes: %v\n%v", err, res.Plan)
	}
	if _, err := e.c.VolumeInspect(t.Context(), vol); err == nil {
		t.Fatal("destroy --volumes left the volume")
	}
}

// TestIntegrationForeignVolume: a volume of the wanted name that is not
// the bottle's is refused and left alone, whether the plan sees it or the
// create meets it.
func TestIntegrationForeignVolume(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	b := e.newBottle(t, "")
	name := b.Metadata.Name
	vol := bottle.VolumeName(name, "work")
	cleanupVolume(t, e.c, vol)
	if _, err := e.c.VolumeCreate(t.Context(), volume.CreateOptions{Name: vol, Labels: map[string]string{"mine": "yes"}}); err != nil {
		t.Fatal(err)
	}
	b.Spec.Agent.Volumes = []spec.Volume{{Source: "work", Target: "/work"}}

	// Observe lists it: the plan refuses it before anything is made.
	_, err := reconcile.Run(t.Context(), []reconcile.Provider{e.p}, []bottle.Bottle{b}, reconcile.Options{})
	if !errors.Is(err, reconcile.ErrNotManaged) || !strings.Contains(err.Error(), `volume "`+vol+`"`) {
		t.Fatalf("apply over a foreign volume: %v", err)
	}
	if left := testenv.Leftovers(t, e.c, name); len(left) != 0 {
		t.Fatalf("the refused apply created %q", left)
	}

	// The create meets it (made after the observe): a clear error.
	r := byRole(translate(&b, "img", "test"))["work"]
	err = e.p.Apply(t.Context(), reconcile.Step{Action: reconcile.Create, Resource: r})
	if !errors.Is(err, reconcile.ErrNotManaged) || !strings.Contains(err.Error(), "volume "+vol+" exists and is not bottle-apply's") {
		t.Fatalf("create over a foreign volume: %v", err)
	}
	v, err := e.c.VolumeInspect(t.Context(), vol)
	if err != nil || len(v.Labels) != 1 || v.Labels["mine"] != "yes" {
		t.Fatalf("the foreign volume was touched: %v, %v", v.Labels, err)
	}
}

// A host directory that is gone is an error, not an empty directory the
// engine makes in its place.
func TestIntegrationMissingHostDirectory(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	b := e.newBottle(t, "")
	gone := filepath.Join(t.TempDir(), "gone")
	b.Spec.Agent.Volumes = []spec.Volume{{Source: "./gone", Target: "/workspace", HostPath: gone}}
	_, err := reconcile.Run(t.Context(), []reconcile.Provider{e.p}, []bottle.Bottle{b}, reconcile.Options{MaxRounds: 1})
	if err == nil || !strings.Contains(err.Error(), "host directory "+gone+": lstat "+gone+": no such file or directory; make it again, or take it out of spec.agent.volumes") {
		t.Fatalf("apply with a missing host directory: %v", err)
	}
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the missing host directory was made: %v", err)
	}
}

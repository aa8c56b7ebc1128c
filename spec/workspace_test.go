package spec

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// workspaceDir writes the example into a temporary directory, with
// the directories it mounts (its /srv/cache is $DIR/cache), and returns
// the directory and the spec file.
func workspaceDir(t *testing.T) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"src", "cache", "notes"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file = filepath.Join(dir, "bottle.yaml")
	writeFiles(t, dir, map[string]string{"claude.json": "{}\n", "bottle.yaml": strings.ReplaceAll(`apiVersion: bottle-apply/v1
kind: Bottle
metadata: {name: work}
spec:
  agent:
    image: alpine
    user: "1000:1000"
    volumes:
      - ./src:/workspace
      - $DIR/cache:/cache:ro
      - work:/home/agent
      - source: ./notes
        target: /notes
        readOnly: true
      - work:/other:rw
    files:
      - path: /root/.claude.json
        source: ./claude.json
        mode: "0600"
      - {path: /etc/motd, content: "", owner: "0"}
`, "$DIR", dir)})
	return dir, file
}

func TestLoadWorkspace(t *testing.T) {
	t.Parallel()
	dir, file := workspaceDir(t)
	got, err := Load([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Agent{
		Image: "alpine",
		User:  "1000:1000",
		Volumes: []Volume{
			{Source: "./src", Target: "/workspace", HostPath: filepath.Join(dir, "src")},
			{Source: dir + "/cache", Target: "/cache", ReadOnly: true, HostPath: filepath.Join(dir, "cache")},
			{Source: "work", Target: "/home/agent"},
			{Source: "./notes", Target: "/notes", ReadOnly: true, HostPath: filepath.Join(dir, "notes")},
			{Source: "work", Target: "/other"},
		},
		Files: []File{
			{Path: "/root/.claude.json", Source: "./claude.json", Mode: "0600"},
			{Path: "/etc/motd", Owner: "0"},
		},
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0].Spec.Agent, want) {
		t.Errorf("agent:\n got %+v\nwant %+v", got, want)
	}
	// Destroy needs no host directory.
	for _, d := range []string{"src", "cache", "notes"} {
		if err := os.Remove(filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load([]string{file}, nil); err == nil {
		t.Error("Load: no error for removed directories")
	}
	got, err = LoadDeclared([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want.Volumes {
		want.Volumes[i].HostPath = ""
	}
	if !reflect.DeepEqual(got[0].Spec.Agent, want) {
		t.Errorf("LoadDeclared agent:\n got %+v\nwant %+v", got[0].Spec.Agent, want)
	}
}

func TestVolumeShortForm(t *testing.T) {
	t.Parallel()
	doc := func(volumes string) string {
		return "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: v}\nspec:\n  agent:\n    image: alpine\n    volumes: " + volumes + "\n"
	}
	tests := []struct{ short, long string }{
		{"./src:/workspace", "{source: ./src, target: /workspace}"},
		{"./src:/workspace:rw", "{source: ./src, target: /workspace, readOnly: false}"},
		{"/srv/cache:/cache:ro", "{source: /srv/cache, target: /cache, readOnly: true}"},
		{"work:/home/agent", "{source: work, target: /home/agent}"},
		{"'work:/home/agent:ro'", "{source: work, target: /home/agent, readOnly: True}"},
	}
	for _, tt := range tests {
		short, err := Parse("v.yaml", []byte(doc("["+tt.short+"]")))
		if err != nil {
			t.Fatalf("%s: %v", tt.short, err)
		}
		long, err := Parse("v.yaml", []byte(doc("["+tt.long+"]")))
		if err != nil {
			t.Fatalf("%s: %v", tt.long, err)
		}
		if !reflect.DeepEqual(short, long) {
			t.Errorf("%s = %+v\n%s = %+v", tt.short, short[0].Spec.Agent.Volumes, tt.long, long[0].Spec.Agent.Volumes)
		}
	}
}

// TestSensitiveHome mounts the home directory, which needs allowSensitive;
// a directory under it does not.
func TestSensitiveHome(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "project"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bottle.yaml")
	for volume, want := range map[string]string{
		home + ":/home/me": file + `:8:9: spec.agent.volumes[0].source: "` + home + `" is your home directory (` + home + `), which the agent could then read and change; mount a directory below it, or set allowSensitive: true on this volume if that is what you want`,
		"{source: " + home + ", target: /home/me, allowSensitive: true}": "",
		home + "/project:/workspace":                                     "",
		home + "/project/..:/home/me":                                    file + `:8:9: spec.agent.volumes[0].source: "` + home + `/project/.." (resolved to ` + home + `) is your home directory (` + home + `), which the agent could then read and change; mount a directory below it, or set allowSensitive: true on this volume if that is what you want`,
	} {
		if err := os.WriteFile(file, []byte(volumeSpec(volume)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := load([]string{file}, nil, func() *hostEnv { return newHostEnv(home, "") })
		if got := ""; err != nil {
			got = err.Error()
			if got != want {
				t.Errorf("%s:\n got %s\nwant %s", volume, got, want)
			}
		} else if want != "" {
			t.Errorf("%s: no error, want %s", volume, want)
		}
	}
}

func TestSensitiveVolumes(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "bottle.yaml")
	writeFiles(t, filepath.Dir(file), map[string]string{"bottle.yaml": volumeSpec("{source: /etc, target: /host-etc, readOnly: true, allowSensitive: true}") +
		"      - {source: /usr, target: /host-usr, allowSensitive: true}\n      - work:/work\n"})
	bottles, err := Load([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bottle vol: spec.agent.volumes[0] mounts the host's /etc (/etc) at /host-etc read-only, as allowSensitive lets it",
		"bottle vol: spec.agent.volumes[1] mounts the host's /usr (/usr) at /host-usr read-write, as allowSensitive lets it",
	}
	if got := SensitiveVolumes(bottles[0]); !reflect.DeepEqual(got, want) {
		t.Errorf("SensitiveVolumes = %q\nwant %q", got, want)
	}
	declared, err := LoadDeclared([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := SensitiveVolumes(declared[0]); got != nil {
		t.Errorf("SensitiveVolumes without host checks = %q", got)
	}
}

// TestFileContentNotEchoed plants a content in files that are wrong in
// every way we report, and checks no message repeats it.
func TestFileContentNotEchoed(t *testing.T) {
	t.Parallel()
	const planted = "planted-content-9f8e"
	data, err := os.ReadFile("testdata/invalid-files.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), planted) {
		t.Fatal("invalid-files.yaml plants no content")
	}
	for _, doc := range []string{string(data),
		volumeSpec("work:/w:ro") + "    files: [{path: /w/x, content: " + planted + "}]\n",
		volumeSpec("work:/w") + "    files: [{path: relative, content: !vault " + planted + "}]\n",
		volumeSpec("work:/w") + "    files: [{path: /x, content: {" + planted + ": 1}}]\n",
		volumeSpec("work:/w") + "    files: [{path: /x, content: !!binary " + planted + "}]\n",
		volumeSpec("work:/w") + "    files: [{path: /x, content: " + planted + ", contents: x}]\n",
	} {
		_, err := Load([]string{Stdin}, strings.NewReader(doc))
		if err == nil {
			t.Fatalf("no error for %s", doc)
		}
		if strings.Contains(err.Error(), planted) {
			t.Errorf("error echoes the content: %v", err)
		}
	}
}

func TestBoolField(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{
		"true": "", "false": "", "True": "", "FALSE": "",
		"yes":    "v.yaml:8:43: spec.agent.volumes[0].readOnly: expected true or false, got a string",
		"on":     "v.yaml:8:43: spec.agent.volumes[0].readOnly: expected true or false, got a string",
		`"true"`: "v.yaml:8:43: spec.agent.volumes[0].readOnly: expected true or false, got a string",
		"1":      "v.yaml:8:43: spec.agent.volumes[0].readOnly: expected true or false, got a number",
		"[true]": "v.yaml:8:43: spec.agent.volumes[0].readOnly: expected true or false, got a list",
		"~":      "",
	} {
		_, err := Parse("v.yaml", []byte(volumeSpec("{source: w, target: /w, readOnly: "+value+"}")))
		if got := ""; err != nil {
			got = err.Error()
			if got != want {
				t.Errorf("readOnly: %s: %s, want %s", value, got, want)
			}
		} else if want != "" {
			t.Errorf("readOnly: %s: no error, want %s", value, want)
		}
	}
}

// loadError loads paths and returns the error's text, "" for none.
func loadError(t *testing.T, paths []string, stdin io.Reader) string {
	t.Helper()
	bottles, err := Load(paths, stdin)
	if err != nil {
		if bottles != nil {
			t.Errorf("Load returned bottles with an error: %+v", bottles)
		}
		return err.Error()
	}
	return ""
}

// TestAgentCannotEditItsBottle is the attack: the agent writes to every
// writable host directory it has, so one that holds the spec file would let
// it rewrite its own bottle (more mounts, wider egress) before the next
// apply. Read-only, the same directories are fine.
func TestAgentCannotEditItsBottle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"specs/token": "x", "specs/claude.json": "{}"})
	file := filepath.Join(dir, "specs", "bottle.yaml")
	holdsSpec := func(line, col int, source string) string {
		return fmt.Sprintf(`%s:%d:%d: spec.agent.volumes[0].source: %q holds the spec file itself (%s): the agent could rewrite its own bottle `+
			`(mount more of the host, widen its egress) before your next apply; mount a directory that does not hold the spec, or add readOnly: true`,
			file, line, col, source, file)
	}
	for _, tt := range []struct{ volume, want string }{
		{".:/workspace", holdsSpec(8, 9, ".")},
		{"./:/workspace", holdsSpec(8, 9, "./")},
		{"..:/workspace", holdsSpec(8, 9, "..")},
		{"{source: " + dir + ", target: /workspace}", holdsSpec(8, 18, dir)},
		{".:/workspace:ro", ""},
		{"{source: .., target: /workspace, readOnly: true}", ""},
		{"{source: ., target: /workspace}\n    secretEnv: {T: {valueFrom: {file: token}}}\n    files: [{path: /x, source: claude.json}]",
			holdsSpec(8, 18, ".")}, // one message a volume: readOnly fixes them all
		{"./secrets:/s\n    secretEnv: {T: {valueFrom: {file: secrets/token}}}", file[:len(file)-len("bottle.yaml")] +
			`bottle.yaml:8:9: spec.agent.volumes[0].source: "./secrets" holds the secret file of spec.agent.secretEnv.T (` + dir +
			`/specs/secrets/token): the agent could replace the secret it is given (with a key of its own, or another file beside the spec) ` +
			`before your next apply; mount a directory that does not hold it, or add readOnly: true`},
	} {
		if err := os.MkdirAll(filepath.Join(dir, "specs", "secrets"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(volumeSpec(tt.volume)), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := loadError(t, []string{file}, nil); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.volume, got, tt.want)
		}
	}
	// The path the spec is named by leads through a writable directory:
	// the agent could point the symlink at a spec of its own.
	writeFiles(t, dir, map[string]string{"w/x": "", "safe/bottle.yaml": volumeSpec(dir + "/w:/w")})
	if err := os.Symlink(filepath.Join(dir, "safe"), filepath.Join(dir, "w", "link")); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(dir, "w", "link", "bottle.yaml")
	want := linked + `:8:9: spec.agent.volumes[0].source: "` + dir + `/w" holds the spec file itself (` + linked + `): the agent could rewrite ` +
		`its own bottle (mount more of the host, widen its egress) before your next apply; mount a directory that does not hold the spec, or add readOnly: true`
	if got := loadError(t, []string{linked}, nil); got != want {
		t.Errorf("spec through a symlink:\n got %s\nwant %s", got, want)
	}
	// A spec from standard input has no file to protect.
	if got := loadError(t, []string{Stdin}, strings.NewReader(volumeSpec(dir+":/workspace"))); got != "" {
		t.Errorf("stdin: %s", got)
	}
}

// TestNestedHostDirs is the race: the agent of a bottle that mounts a
// directory writable can swap any directory inside it for a symlink (to
// /var/run) after Load checks it and before the engine mounts it, also
// when another bottle, loaded with it, mounts the inner one.
func TestNestedHostDirs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(filepath.Join(work, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	outer, inner := filepath.Join(dir, "a", "outer.yaml"), filepath.Join(dir, "b", "inner.yaml")
	write := func(file, name, volume string) {
		writeFiles(t, filepath.Dir(file), map[string]string{filepath.Base(file): strings.Replace(volumeSpec(volume), "name: vol", "name: "+name, 1)})
	}
	refused := inner + `:8:9: spec.agent.volumes[0].source: "` + work + `/cache" lies inside ` + work + `, which bottle outer mounts writable ` +
		`(spec.agent.volumes[0], at ` + outer + `:8): its agent could swap this directory for a symlink (to /var/run, say) between the check ` +
		`and the mount; mount the outer directory only, or make the outer one read-only`
	for _, tt := range []struct{ outer, inner, want string }{
		{work + ":/work", work + "/cache:/cache", refused},
		{work + ":/work", work + "/cache:/cache:ro", refused},
		{work + ":/work:ro", work + "/cache:/cache", ""},
		{work + ":/work", work + ":/work", ""}, // the same directory is no race
		{work + "/cache:/cache", work + "/cache:/cache", ""},
	} {
		write(outer, "outer", tt.outer)
		write(inner, "inner", tt.inner)
		for _, paths := range [][]string{{outer, inner}, {inner, outer}} {
			if got := loadError(t, paths, nil); got != tt.want {
				t.Errorf("%s then %s:\n got %s\nwant %s", tt.outer, tt.inner, got, tt.want)
			}
		}
	}
}

// TestEngineStateForbidden mounts what an engine outside the fixed list
// keeps: rootless docker's state in a (fake) home, and the directory of the
// socket DOCKER_HOST names.
func TestEngineStateForbidden(t *testing.T) {
	home, sock := t.TempDir(), filepath.Join(t.TempDir(), "run", "engine")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_HOST", "unix://"+sock+"/docker.sock")
	writeFiles(t, home, map[string]string{".local/share/docker/volumes/x": "", ".docker/config.json": "{}", "src/x": ""})
	file := filepath.Join(t.TempDir(), "bottle.yaml")
	never := "; a bottle must never reach it: "
	for volume, want := range map[string]string{
		home + "/.local:/l": `"` + home + `/.local" contains ` + home + `/.local/share/docker, where rootless docker keeps its state` + never +
			"mount a directory that holds only what the agent needs",
		home + "/.local/share/docker/volumes:/v": `"` + home + `/.local/share/docker/volumes" is inside ` + home +
			`/.local/share/docker, where rootless docker keeps its state` + never + "mount another directory",
		home + "/.docker:/d:ro": `"` + home + `/.docker" is inside ` + home +
			`/.docker, where the docker CLI keeps its credentials and the TLS keys of its contexts` + never + "mount another directory",
		sock + ":/s": `"` + sock + `" is inside ` + sock + `, where DOCKER_HOST (unix://` + sock + `/docker.sock) puts the engine's socket` +
			never + "mount another directory",
		filepath.Dir(sock) + ":/s": `"` + filepath.Dir(sock) + `" contains ` + sock + `, where DOCKER_HOST (unix://` + sock +
			`/docker.sock) puts the engine's socket` + never + "mount a directory that holds only what the agent needs",
		// Not there yet, but rootless podman may put it there later.
		home + "/.local/share:/s": `"` + home + `/.local/share" contains ` + home + `/.local/share/docker, where rootless docker keeps its state` +
			never + "mount a directory that holds only what the agent needs",
		home + "/src:/src": "",
	} {
		if err := os.WriteFile(file, []byte(volumeSpec(volume)), 0o644); err != nil {
			t.Fatal(err)
		}
		if want != "" {
			want = file + ":8:9: spec.agent.volumes[0].source: " + want
		}
		if got := loadError(t, []string{file}, nil); got != want {
			t.Errorf("%s:\n got %s\nwant %s", volume, got, want)
		}
	}
	// Only a unix socket has a directory.
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
	if err := os.WriteFile(file, []byte(volumeSpec(sock+":/s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := loadError(t, []string{file}, nil); got != "" {
		t.Errorf("DOCKER_HOST=tcp://: %s", got)
	}
}

// TestSensitiveParent mounts a directory that holds the home directory
// (/home for /home/me): it exposes the home as much as the home itself.
func TestSensitiveParent(t *testing.T) {
	homes := filepath.Join(t.TempDir(), "home")
	t.Setenv("HOME", filepath.Join(homes, "me"))
	t.Setenv("DOCKER_HOST", "")
	// The home holds a docker CLI's directory: still, the issue's
	// contract lets the whole home be mounted with allowSensitive.
	writeFiles(t, homes, map[string]string{"me/.bashrc": "", "me/.docker/config.json": "{}"})
	file := filepath.Join(t.TempDir(), "bottle.yaml")
	for volume, want := range map[string]string{
		homes + ":/home": `"` + homes + `" holds your home directory (` + homes + `/me), which the agent could then read and change; ` +
			"mount a directory that does not hold it, or set allowSensitive: true on this volume if that is what you want",
		homes + ":/home:ro": `"` + homes + `" holds your home directory (` + homes + `/me), which the agent could then read; ` +
			"mount a directory that does not hold it, or set allowSensitive: true on this volume if that is what you want",
		"{source: " + homes + ", target: /home, allowSensitive: true}": "",
	} {
		if err := os.WriteFile(file, []byte(volumeSpec(volume)), 0o644); err != nil {
			t.Fatal(err)
		}
		if want != "" {
			want = file + ":8:9: spec.agent.volumes[0].source: " + want
		}
		if got := loadError(t, []string{file}, nil); got != want {
			t.Errorf("%s:\n got %s\nwant %s", volume, got, want)
		}
	}
	if err := os.WriteFile(file, []byte(volumeSpec("{source: "+homes+", target: /home, allowSensitive: true}")), 0o644); err != nil {
		t.Fatal(err)
	}
	bottles, err := Load([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bottle vol: spec.agent.volumes[0] mounts " + homes + ", which holds your home directory (" + homes + "/me), " +
		"at /home read-write, as allowSensitive lets it; the agent can then use what your home holds: " +
		"ssh keys, the docker CLI's credentials and contexts (~/.docker), a rootless engine's state"}
	if got := SensitiveVolumes(bottles[0]); !reflect.DeepEqual(got, want) {
		t.Errorf("SensitiveVolumes = %q\nwant %q", got, want)
	}
}

// TestHoldsByIdentity compares directories by identity where names differ:
// a symlink stands in for a bind mount or a name in another case on a
// case-insensitive filesystem, which no name comparison sees through.
func TestHoldsByIdentity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"real/sub/x": ""})
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	real, alias := filepath.Join(dir, "real"), filepath.Join(dir, "alias")
	for _, tt := range []struct {
		dir, p string
		want   bool
	}{
		{real, real + "/sub", true},
		{real, alias + "/sub", true},
		{alias, real + "/sub/x", true},
		{real + "/sub", alias, false},
		{real, dir + "/other", false},
	} {
		if got := holds(tt.dir, tt.p); got != tt.want {
			t.Errorf("holds(%s, %s) = %v", tt.dir, tt.p, got)
		}
	}
	// A forbidden directory known only by another name.
	h := &hostEnv{forbidden: []hostPath{{forms: []string{alias}, why: "the engine keeps its state"}},
		sensitive: []hostPath{{forms: []string{alias + "/sub"}, why: "a sensitive directory"}}}
	want := "is inside " + alias + ", where the engine keeps its state; a bottle must never reach it: mount another directory"
	if got := h.forbid(real+"/sub", true); got != want {
		t.Errorf("forbid(%s/sub) = %q, want %q", real, got, want)
	}
	h.forbidden[0].forms = []string{alias + "/sub"}
	want = "contains " + alias + "/sub, where the engine keeps its state; a bottle must never reach it: mount a directory that holds only what the agent needs"
	if got := h.forbid(real, true); got != want {
		t.Errorf("forbid(%s) = %q, want %q", real, got, want)
	}
	if name, is := h.sensitiveName(real + "/sub"); name != "a sensitive directory" || !is {
		t.Errorf("sensitiveName(%s/sub) = %q, %v", real, name, is)
	}
	if name, is := h.sensitiveName(real); name != "a sensitive directory" || is {
		t.Errorf("sensitiveName(%s) = %q, %v", real, name, is)
	}
}

// TestFilesInsideVolumes: a file is written through the volume mounted
// deepest above it; into a host directory it would land on the host.
func TestFilesInsideVolumes(t *testing.T) {
	t.Parallel()
	spec := volumeSpec("./src:/workspace") + "      - cache:/workspace/cache\n      - home:/home/agent\n      - ./ro:/ro:ro\n"
	for path, want := range map[string]string{
		"/workspace/cache/seed":  "",
		"/home/agent/.gitconfig": "",
		"/workspace/cache":       `v.yaml:12:20: spec.agent.files[0].path: "/workspace/cache" is where spec.agent.volumes[1] is mounted, a directory; name a file in it or elsewhere`,
		"/workspace/.env": `v.yaml:12:20: spec.agent.files[0].path: "/workspace/.env" is inside spec.agent.volumes[0] (at /workspace) and would be written ` +
			`into the host directory "./src" on every create; put the file there on the host yourself, or choose a path outside it`,
		"/ro/x": `v.yaml:12:20: spec.agent.files[0].path: "/ro/x" is inside spec.agent.volumes[3], mounted read-only at /ro, where it cannot be written; ` +
			"put the file elsewhere, or make the volume writable",
	} {
		_, err := Parse("v.yaml", []byte(spec+"    files: [{path: "+path+", content: x}]\n"))
		if got := ""; err != nil {
			got = err.Error()
			if got != want {
				t.Errorf("%s:\n got %s\nwant %s", path, got, want)
			}
		} else if want != "" {
			t.Errorf("%s: no error, want %s", path, want)
		}
	}
}

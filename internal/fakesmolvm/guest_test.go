package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// keysInOrder returns the keys of each top-level object of a JSON array,
// or of a single object, in the order the text has them.
func keysInOrder(t *testing.T, text string) [][]string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	var out [][]string
	var walk func(depth int, keys *[]string)
	tok := func() json.Token {
		tk, err := dec.Token()
		if err != nil {
			t.Fatalf("decode %q: %v", text, err)
		}
		return tk
	}
	walk = func(depth int, keys *[]string) {
		switch tk := tok().(type) {
		case json.Delim:
			switch tk {
			case '{':
				var mine []string
				for dec.More() {
					k := tok().(string)
					mine = append(mine, k)
					walk(depth+1, nil)
				}
				tok()
				if keys != nil {
					*keys = mine
				}
			case '[':
				for dec.More() {
					var k []string
					walk(depth+1, &k)
					if depth == 0 {
						out = append(out, k)
					}
				}
				tok()
			}
		}
	}
	var top []string
	walk(0, &top)
	if top != nil {
		out = append(out, top)
	}
	return out
}

var (
	keys080 = []string{"cmd", "cpus", "created_at", "entrypoint", "ephemeral", "fake", "gpu", "gpu_vram_mib",
		"health_cmd", "health_interval_secs", "health_retries", "health_startup_grace_secs", "health_timeout_secs",
		"image", "memory_mib", "mounts", "name", "network", "overlay_gb", "pid", "ports",
		"restart_count", "restart_max_retries", "restart_policy", "state", "storage_gb"}
	keys193 = []string{"cmd", "cpus", "created_at", "cuda", "cuda_fork_pool_size", "cuda_vram_limit_mib",
		"entrypoint", "ephemeral", "fake", "forkable", "forkpoint_held", "gpu", "gpu_vram_mib",
		"health_cmd", "health_interval_secs", "health_retries", "health_startup_grace_secs", "health_timeout_secs",
		"image", "labels", "memory_mib", "mounts", "name", "network", "overlay_gb", "pid", "ports",
		"restart_count", "restart_max_retries", "restart_policy", "state", "storage_gb"}
)

func TestListJSON(t *testing.T) {
	t.Parallel()
	vol := t.TempDir()
	tests := []struct {
		version string
		keys    []string
		// golden is the start of the first object, up to "fake".
		golden string
	}{
		{v080, keys080, "[\n  {\n    \"cmd\": [],\n    \"cpus\": 2,\n    \"created_at\": 1750000000,\n    \"entrypoint\": [],\n    \"ephemeral\": false,\n    \"fake\": {\n"},
		{v193, keys193, "[\n  {\n    \"cmd\": [],\n    \"cpus\": 2,\n    \"created_at\": 1750000000,\n    \"cuda\": false,\n    \"cuda_fork_pool_size\": null,\n    \"cuda_vram_limit_mib\": null,\n    \"entrypoint\": [],\n    \"ephemeral\": false,\n    \"fake\": {\n"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.version)
			checkResult(t, "empty ls --json", f.run("machine", "ls", "--json"), result{stdout: "[]\n"})
			f.must(createArgs(tt.version, "alpha", "--cpus", "2", "-v", vol+":/a", "-v", vol+":/b:ro", "-p", "80")...)
			f.must(createArgs(tt.version, "beta", "--image", "alpine", "--gpu", "--gpu-vram", "2048")...)

			r := f.must("machine", "ls", "--json")
			if !strings.HasPrefix(r.stdout, tt.golden) {
				t.Errorf("ls --json starts\n%s\nwant\n%s", r.stdout[:min(len(r.stdout), len(tt.golden))], tt.golden)
			}
			got := keysInOrder(t, r.stdout)
			if len(got) != 2 || !slices.Equal(got[0], tt.keys) || !slices.Equal(got[1], tt.keys) {
				t.Errorf("keys = %q\nwant (twice) %q", got, tt.keys)
			}
			ms := f.ls()
			if ms[0]["name"] != "alpha" || ms[0]["mounts"] != float64(2) || ms[0]["ports"] != float64(1) || ms[0]["image"] != nil {
				t.Errorf("alpha = %v, want mounts 2, ports 1, image null", ms[0])
			}
			if ms[1]["image"] != "alpine" || ms[1]["gpu"] != true || ms[1]["gpu_vram_mib"] != float64(2048) || ms[1]["mounts"] != float64(0) {
				t.Errorf("beta = %v, want image alpine, gpu, 2048 MiB, 0 mounts", ms[1])
			}
			if tt.version == v193 && !reflect.DeepEqual(ms[1]["labels"], map[string]any{}) {
				t.Errorf("labels = %#v, want {}", ms[1]["labels"])
			}

			st := f.must("machine", "status", "-n", "alpha", "--json")
			if !strings.HasPrefix(st.stdout, "{\n  \"cmd\": [],\n") {
				t.Errorf("status --json = %q, want one pretty object", st.stdout)
			}
			if sk := keysInOrder(t, st.stdout); len(sk) != 1 || !slices.Equal(sk[0], tt.keys) {
				t.Errorf("status --json keys = %q, want %q", sk, tt.keys)
			}
			var one map[string]any
			if err := json.Unmarshal([]byte(st.stdout), &one); err != nil || !reflect.DeepEqual(one, ms[0]) {
				t.Errorf("status --json = %v (%v), want the ls --json object %v", one, err, ms[0])
			}
			checkResult(t, "status --json unknown", f.run("machine", "status", "-n", "ghost", "--json"),
				result{code: 1, stderr: "Error: config operation failed: machine status: machine 'ghost' not found\n"})
		})
	}
}

func TestListTable(t *testing.T) {
	t.Parallel()
	f := newFake(t, v080)
	f.must("machine", "create", "a-very-long-machine-name-indeed", "--mem", "512", "--storage", "40", "-p", "1:2")
	f.must("machine", "create", "b")
	f.must("machine", "start", "-n", "b")
	want := "NAME                 STATE         CPUS     MEMORY  MOUNTS   PORTS  STORAGE  OVERLAY\n" +
		strings.Repeat("-", 88) + "\n" +
		"a-very-long-mac...   created          4    512 MiB       0       1   40 GiB   10 GiB\n" +
		"b                    running          4   8192 MiB       0       0   20 GiB   10 GiB\n"
	checkResult(t, "ls", f.run("machine", "ls"), result{stdout: want})
}

func TestHypervisorErrors(t *testing.T) {
	t.Parallel()
	const op = "Error: agent operation failed: start machine: "
	tests := []struct {
		mode    string
		version string
		want    string
	}{
		{"kvm-missing", v080, op + "kvm not available: KVM not available. Ensure KVM kernel module is loaded.\n"},
		{"kvm-missing", v193, op + "kvm not available: KVM not available. Ensure KVM kernel module is loaded.\n"},
		{"kvm-permission", v080, op + "kvm permission denied: Cannot access /dev/kvm. Add your user to the 'kvm' group.\n"},
		{"kvm-permission", v193, op + "kvm permission denied: Cannot access /dev/kvm. Add your user to the 'kvm' group.\n"},
		{"macos-entitlement", v080, op + "krun_start_enter returned: -22\n"},
		{"macos-entitlement", v193, op + "krun_start_enter returned: -22 (the smolvm binary lacks the com.apple.security.hypervisor entitlement)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.version, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.version, "FAKE_SMOLVM_REGISTRY_IMAGES=alpine")
			f.must(createArgs(tt.version, "web", "--image", "alpine")...) // create needs no KVM
			before := f.stateBytes()
			hv := []string{"FAKE_SMOLVM_HYPERVISOR=" + tt.mode}
			out := filepath.Join(t.TempDir(), "packed")
			for _, args := range [][]string{
				{"machine", "start", "-n", "web"},
				{"machine", "start"}, // would create "default"
				{"machine", "run", "--", "true"},
				{"pack", "create", "-I", "alpine", "-o", out},
			} {
				checkResult(t, strings.Join(args, " "), f.runEnv(hv, "", args...), result{code: 1, stderr: tt.want})
			}
			if after := f.stateBytes(); after != before {
				t.Errorf("machines.json changed:\n%s\nwant\n%s", after, before)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("pack wrote %s despite the hypervisor error", out)
			}
			// Without the fault the same start works.
			f.must("machine", "start", "-n", "web")
		})
	}
}

func TestImagePulledAtFirstStart(t *testing.T) {
	t.Parallel()
	const pullErr = "Error: agent operation failed: pull image: failed to pull '%s': "
	tests := []struct {
		name     string
		version  string
		image    string
		registry string // FAKE_SMOLVM_REGISTRY_IMAGES at the first start
		ok       bool
	}{
		{"listed", v080, "alpine", "docker.io/library/alpine:latest", true},
		{"listed normalised", v193, "docker.io/library/alpine:latest", "alpine", true},
		{"tag differs", v080, "alpine:3.20", "alpine", false},
		{"not listed", v193, "ghcr.io/acme/tool:1", "alpine", false},
		{"loopback listed", v080, "127.0.0.1:5000/x:y", "127.0.0.1:5000/x:y", true},
		{"0.8 path is pulled and fails", v080, "./img.tar", "./img.tar", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.version)
			f.must(createArgs(tt.version, "web", "--image", tt.image)...)
			before := f.stateBytes()
			r := f.runEnv([]string{"FAKE_SMOLVM_REGISTRY_IMAGES=" + tt.registry}, "", "machine", "start", "-n", "web")
			if !tt.ok {
				want := strings.Replace(pullErr, "%s", tt.image, 1)
				if r.code != 1 || !strings.Contains(r.stderr, want) || r.stdout != "" {
					t.Fatalf("start: exit %d, stdout %q, stderr %q; want exit 1 and %q", r.code, r.stdout, r.stderr, want)
				}
				if f.stateBytes() != before {
					t.Errorf("a failed pull changed machines.json")
				}
				return
			}
			wantErr := "Starting machine 'web'...\nPulling image " + tt.image + "...\n"
			checkResult(t, "first start", r, result{stdout: "Machine 'web' running (PID: 41000)\n", stderr: wantErr})
			// Later starts need no registry: the image is cached.
			f.must("machine", "stop", "-n", "web")
			checkResult(t, "second start", f.run("machine", "start", "-n", "web"),
				result{stdout: "Machine 'web' running (PID: 41001)\n", stderr: "Starting machine 'web'...\n"})
		})
	}
}

func TestDirectoryImageAndInit(t *testing.T) {
	t.Parallel()
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "motd"), []byte("from image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFake(t, v193)
	f.must("machine", "create", "-n", "web", "--image", rootfs, "-w", "/work", "-e", "WHO=init",
		"--init", "echo $WHO >> ran.log", "--init", "mkdir -p ../opt && echo second > ../opt/x")
	checkResult(t, "first start", f.run("machine", "start", "-n", "web"), result{
		stdout: "Machine 'web' running (PID: 41000)\n",
		stderr: "Starting machine 'web'...\nRunning 2 init command(s)...\n",
	})
	f.must("machine", "stop", "-n", "web")
	f.must("machine", "start", "-n", "web") // init runs on the first start only
	for path, want := range map[string]string{
		"etc/motd":     "from image\n",
		"work/ran.log": "init\n",
		"opt/x":        "second\n",
	} {
		got, err := os.ReadFile(filepath.Join(f.root("web"), path))
		if err != nil || string(got) != want {
			t.Errorf("root %s = %q (%v), want %q", path, got, err, want)
		}
	}
	checkResult(t, "exec cat", f.run("machine", "exec", "--name", "web", "--", "cat", "../etc/motd"), result{stdout: "from image\n"})

	f.must("machine", "create", "-n", "bad", "--init", "echo oops >&2; exit 3")
	before := f.stateBytes()
	checkResult(t, "failing init", f.run("machine", "start", "-n", "bad"), result{
		code:   1,
		stderr: "Starting machine 'bad'...\nRunning 1 init command(s)...\nError: agent operation failed: init: init[0] failed (exit 3): oops\n",
	})
	if f.stateBytes() != before {
		t.Errorf("a failed init changed machines.json")
	}
}

func TestPullCheckAgainstLoopbackRegistry(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method != http.MethodGet || r.URL.Path != "/v2/team/app/manifests/v1" ||
			!strings.Contains(r.Header.Get("Accept"), "application/vnd.oci.image.manifest.v1+json") ||
			!strings.Contains(r.Header.Get("Accept"), "application/vnd.docker.distribution.manifest.v2+json") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Write([]byte(`{"schemaVersion":2}`))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	host := u.Host
	localhost := strings.Replace(host, "127.0.0.1", "localhost", 1)

	tests := []struct {
		name  string
		image string
		env   []string
		ok    bool
		hits  int32
	}{
		{"served", host + "/team/app:v1", []string{"FAKE_SMOLVM_PULL_CHECK=1"}, true, 1},
		{"served via localhost", localhost + "/team/app:v1", []string{"FAKE_SMOLVM_PULL_CHECK=1"}, true, 1},
		{"not served", host + "/team/app:v2", []string{"FAKE_SMOLVM_PULL_CHECK=1", "FAKE_SMOLVM_REGISTRY_IMAGES=" + host + "/team/app:v2"}, false, 1},
		{"listed, no check", host + "/team/app:v2", []string{"FAKE_SMOLVM_REGISTRY_IMAGES=" + host + "/team/app:v2"}, true, 0},
		{"neither", host + "/team/app:v1", nil, false, 0},
		{"non-loopback is never contacted", "registry.example.com/team/app:v1", []string{"FAKE_SMOLVM_PULL_CHECK=1"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the subtests count the registry's requests.
			f := newFake(t, v080, tt.env...)
			hits.Store(0)
			out := filepath.Join(t.TempDir(), "app")
			r := f.run("pack", "create", "-I", tt.image, "-o", out)
			if ok := r.code == 0; ok != tt.ok {
				t.Errorf("pack create -I %s: exit %d, stderr %q; want success %v", tt.image, r.code, r.stderr, tt.ok)
			}
			if !tt.ok && !strings.Contains(r.stderr, "Error: agent operation failed: pull image: failed to pull '"+tt.image+"'") {
				t.Errorf("stderr %q lacks the pull error", r.stderr)
			}
			if tt.name == "not served" && !strings.Contains(r.stderr, "404 Not Found") {
				t.Errorf("stderr %q does not name the registry's 404", r.stderr)
			}
			if got := hits.Load(); got != tt.hits {
				t.Errorf("registry requests = %d, want %d", got, tt.hits)
			}
		})
	}
}

func TestPackCreate(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v, "FAKE_SMOLVM_REGISTRY_IMAGES=alpine:3.20,127.0.0.1:5000/x:y")
			dir := t.TempDir()
			out := filepath.Join(dir, "tool")
			r := f.run("pack", "create", "-I", "alpine:3.20", "-o", out, "--cpus", "2", "--mem", "1024")
			stub, _ := os.ReadFile(out)
			sidecar, _ := os.ReadFile(out + ".smolmachine")
			want := "Packed: " + out + " (" + itoa(len(stub)) + " B)\n" +
				"Assets: " + out + ".smolmachine (" + itoa(len(sidecar)) + " B)\n" +
				"Run with: " + out + "\n"
			checkResult(t, "pack create", r, result{stdout: want, stderr: "Pulling image alpine:3.20...\n"})
			if !strings.Contains(string(stub), `"alpine:3.20"`) || !strings.Contains(string(sidecar), `"image":"alpine:3.20"`) {
				t.Errorf("pack files do not name the image:\n%s\n%s", stub, sidecar)
			}
			if fi, err := os.Stat(out); err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("%s is not an executable file: %v", out, err)
			}

			// A machine made from the pack takes its image and resources, and
			// needs no pull at start.
			f.must(createArgs(v, "packed", "--from", out+".smolmachine")...)
			m := f.machine("packed")
			if m["image"] != "alpine:3.20" || m["cpus"] != float64(2) || m["memory_mib"] != float64(1024) {
				t.Errorf("machine from pack = %v", m)
			}
			checkResult(t, "start packed", f.runEnv([]string{"FAKE_SMOLVM_REGISTRY_IMAGES="}, "", "machine", "start", "-n", "packed"),
				result{stdout: "Machine 'packed' running (PID: 41000)\n", stderr: "Starting machine 'packed'...\n"})

			single := filepath.Join(dir, "single")
			r = f.must("pack", "create", "-I", "127.0.0.1:5000/x:y", "-o", single, "--single-file")
			if strings.Contains(r.stdout, "Assets:") {
				t.Errorf("--single-file printed Assets: %q", r.stdout)
			}
			if _, err := os.Stat(single + ".smolmachine"); !os.IsNotExist(err) {
				t.Errorf("--single-file wrote a sidecar")
			}

			// pack takes registry references only.
			tar := filepath.Join(dir, "img.tar")
			os.WriteFile(tar, []byte("x"), 0o644)
			for _, img := range []string{tar, "busybox"} {
				r = f.run("pack", "create", "-I", img, "-o", filepath.Join(dir, "nope"))
				if r.code != 1 || !strings.Contains(r.stderr, "failed to pull '"+img+"'") {
					t.Errorf("pack create -I %s: exit %d, stderr %q; want a pull failure", img, r.code, r.stderr)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
				t.Errorf("a failed pack wrote its output")
			}
		})
	}
}

func TestExec(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			f.must(createArgs(v, "web", "-e", "A=machine", "-e", "B=machine", "-w", "/srv")...)
			f.must(createArgs(v, "idle")...)
			f.must("machine", "start", "-n", "web")
			tests := []struct {
				name  string
				args  []string // after "machine exec"
				stdin string
				want  result
			}{
				{"exit code", []string{"--name", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 7"}, "", result{code: 7, stdout: "out\n", stderr: "err\n"}},
				{"without --", []string{"--name", "web", "sh", "-c", "exit 1"}, "", result{code: 1}},
				{"env", []string{"--name", "web", "-e", "B=exec", "-e", "junk", "--", "sh", "-c", `echo "$A $B ${HOME:-nohome}"`}, "", result{stdout: "machine exec nohome\n"}},
				{"default workdir", []string{"--name", "web", "--", "pwd"}, "", result{stdout: f.root("web") + "/srv\n"}},
				{"workdir", []string{"--name", "web", "-w", "/tmp/x/../y", "--", "pwd"}, "", result{stdout: f.root("web") + "/tmp/y\n"}},
				{"no stdin without -i", []string{"--name", "web", "--", "cat"}, "input\n", result{}},
				{"stdin with -i", []string{"--name", "web", "-i", "--", "cat"}, "input\n", result{stdout: "input\n"}},
				{"clustered -it", []string{"--name", "web", "-it", "--", "cat"}, "x", result{stdout: "x"}},
				{"flags after -- are the command's", []string{"--name", "web", "--", "echo", "--name", "-e"}, "", result{stdout: "--name -e\n"}},
				{"not found", []string{"--name", "web", "--", "no-such-command-xyz"}, "", result{code: 127, stderr: "exec failed: no-such-command-xyz: No such file or directory\n"}},
				{"signal", []string{"--name", "web", "--", "sh", "-c", "kill -TERM $$"}, "", result{code: 143}},
				{"stopped", []string{"--name", "idle", "--", "true"}, "", result{code: 1, stderr: "Error: agent operation failed: connect: machine 'idle' is not running. Use 'smolvm machine start --name idle' first.\n"}},
				{"unknown", []string{"--name", "ghost", "--", "true"}, "", result{code: 1, stderr: "Error: vm not found: ghost\n"}},
				{"no default", []string{"--", "true"}, "", result{code: 1, stderr: "Error: agent operation failed: connect: machine 'default' not found\n"}},
			}
			for _, tt := range tests {
				checkResult(t, tt.name, f.runEnv(nil, tt.stdin, append([]string{"machine", "exec"}, tt.args...)...), tt.want)
			}
		})
	}
}

func TestExecTimeout(t *testing.T) {
	t.Parallel()
	for _, timeout := range []string{"300ms", "1sec"} {
		t.Run(timeout, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v193)
			f.must("machine", "create", "--name", "web")
			f.must("machine", "start", "--name", "web")
			start := time.Now()
			r := f.run("machine", "exec", "--name", "web", "--timeout", timeout, "--", "sh", "-c", "echo begun; sleep 30; echo never")
			if r.code != 124 || r.stdout != "begun\n" {
				t.Errorf("exit %d, stdout %q; want 124 and the output before the timeout", r.code, r.stdout)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("exec took %v: the timeout did not kill the command", d)
			}
			checkResult(t, "within the timeout", f.run("machine", "exec", "--name", "web", "--timeout", "1m 30s", "--", "true"), result{})
		})
	}
}

func TestCp(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			f.must(createArgs(v, "web")...)
			f.must(createArgs(v, "idle")...)
			f.must("machine", "start", "-n", "web")
			dir := t.TempDir()
			local := filepath.Join(dir, "in.txt")
			os.WriteFile(local, []byte("hello\n"), 0o644)

			checkResult(t, "upload", f.run("machine", "cp", local, "web:/data/in.txt"),
				result{stderr: "Uploaded " + local + " (6 bytes) -> /data/in.txt\n"})
			if got, err := os.ReadFile(filepath.Join(f.root("web"), "data", "in.txt")); err != nil || string(got) != "hello\n" {
				t.Errorf("guest file = %q (%v)", got, err)
			}
			checkResult(t, "exec sees it", f.run("machine", "exec", "--name", "web", "-w", "/data", "--", "cat", "in.txt"), result{stdout: "hello\n"})

			f.must("machine", "exec", "--name", "web", "-w", "/out", "--", "sh", "-c", "echo result > r.json")
			back := filepath.Join(dir, "r.json")
			checkResult(t, "download", f.run("machine", "cp", "web:/out/r.json", back),
				result{stderr: "Downloaded /out/r.json (7 bytes) -> " + back + "\n"})
			if got, _ := os.ReadFile(back); string(got) != "result\n" {
				t.Errorf("downloaded %q", got)
			}

			for _, tt := range []struct {
				name string
				args []string
				want string
			}{
				{"stopped", []string{local, "idle:/x"}, "Error: agent operation failed: connect: machine 'idle' is not running. Use 'smolvm machine start --name idle' first.\n"},
				{"unknown", []string{local, "ghost:/x"}, "Error: vm not found: ghost\n"},
				{"no machine side", []string{local, back}, "Error: config operation failed: cp: one of SRC or DST must use machine:path syntax (e.g., myvm:/workspace/file)\n"},
				{"missing guest file", []string{"web:/nope", back}, "Error: agent operation failed: read file: /nope: No such file or directory (os error 2)\n"},
				{"missing local file", []string{filepath.Join(dir, "nope"), "web:/x"}, "Error: agent operation failed: read local file: " + filepath.Join(dir, "nope") + ": No such file or directory (os error 2)\n"},
			} {
				checkResult(t, tt.name, f.run(append([]string{"machine", "cp"}, tt.args...)...), result{code: 1, stderr: tt.want})
			}
		})
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	f := newFake(t, v080, "FAKE_SMOLVM_REGISTRY_IMAGES=alpine")
	checkResult(t, "exit code", f.run("machine", "run", "-I", "alpine", "-e", "X=1", "--", "sh", "-c", "echo $X; exit 4"),
		result{code: 4, stdout: "1\n", stderr: "Pulling image alpine...\n"})
	checkResult(t, "mem 1", f.run("machine", "run", "--mem", "1", "--", "true"),
		result{code: 1, stderr: "Error: config operation failed: run: memory must be at least 64 MiB, got 1\n"})
	checkResult(t, "cpus 0", f.run("machine", "run", "--cpus", "0", "--", "true"),
		result{code: 1, stderr: "Error: config operation failed: run: cpus must be at least 1, got 0\n"})
	if len(f.ls()) != 0 {
		t.Errorf("run left a machine behind")
	}
	entries, _ := os.ReadDir(filepath.Join(f.state, "roots"))
	if len(entries) != 0 {
		t.Errorf("run left roots behind: %v", entries)
	}
}

func TestPackFromVM(t *testing.T) {
	t.Parallel()
	f := newFake(t, v193, "FAKE_SMOLVM_REGISTRY_IMAGES=alpine")
	out := filepath.Join(t.TempDir(), "snap")
	f.must("machine", "create", "--name", "web", "--image", "alpine")
	checkResult(t, "never started", f.run("pack", "create", "--from-vm", "web", "-o", out), result{code: 1,
		stderr: "Error: config operation failed: pack: machine 'web' has never been started; start it once before packing it\n"})
	f.must("machine", "start", "--name", "web")
	checkResult(t, "running", f.run("pack", "create", "--from-vm", "web", "-o", out),
		result{code: 1, stderr: "Error: invalid vm state: expected stopped, got Running\n"})
	f.must("machine", "stop", "--name", "web")
	checkResult(t, "unknown", f.run("pack", "create", "--from-vm", "ghost", "-o", out),
		result{code: 1, stderr: "Error: vm not found: ghost\n"})
	r := f.runEnv([]string{"FAKE_SMOLVM_REGISTRY_IMAGES="}, "", "pack", "create", "--from-vm", "web", "-o", out)
	if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Packed: "+out+" (") {
		t.Fatalf("pack --from-vm of a stopped machine: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if pi, ok := readPack(out + ".smolmachine"); !ok || pi.Image != "alpine" || pi.FromVM != "web" {
		t.Errorf("sidecar = %+v, %v; want image alpine from web", pi, ok)
	}
}

func TestRelativeStateDir(t *testing.T) {
	f := newFake(t, v080)
	t.Chdir(f.state)
	f.env = append(f.env, "FAKE_SMOLVM_STATE=rel")
	f.must("machine", "create", "web")
	f.must("machine", "start", "-n", "web")
	want := filepath.Join(f.state, "rel", "roots", "web") + "/tmp\n"
	checkResult(t, "pwd", f.run("machine", "exec", "--name", "web", "-w", "/tmp", "--", "pwd"), result{stdout: want})
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			checkResult(t, "--version", f.run("--version"), result{stdout: "smolvm " + v + "\n" + Announcement + "\n"})
		})
	}
}

// step is one invocation and its exact outcome.
type step struct {
	args  []string
	stdin string
	want  result
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	created := createdOut("web", 2, 1024)
	tests := []struct {
		version string
		steps   []step
		orphans string // orphans.log at the end
	}{
		{
			version: v080,
			steps: []step{
				{args: createArgs(v080, "web", "--cpus", "2", "--mem", "1024"), want: result{stdout: created}},
				{args: []string{"machine", "status", "-n", "web"}, want: result{stdout: "Machine 'web': not running\n"}},
				{args: []string{"machine", "stop", "--name", "web"}, want: result{stdout: "Machine 'web' is not running (state: created)\n"}},
				{args: []string{"machine", "start", "--name", "web"}, want: result{stdout: "Machine 'web' running (PID: 41000)\n", stderr: "Starting machine 'web'...\n"}},
				{args: []string{"machine", "start", "-n", "web"}, want: result{stdout: "Machine 'web' already running (PID: 41000)\n"}},
				{args: []string{"machine", "status", "-n", "web"}, want: result{stdout: "Machine 'web': running (PID: 41000)\n"}},
				{args: []string{"machine", "stop", "-n", "web"}, want: result{stdout: "Stopped machine: web\n", stderr: "Stopping machine 'web'...\n"}},
				{args: []string{"machine", "stop", "-n", "web"}, want: result{stdout: "Machine 'web' is not running (state: stopped)\n"}},
				{args: []string{"machine", "status", "-n", "web"}, want: result{stdout: "Machine 'web': not running\n"}},
				{args: []string{"vm", "start", "-n", "web"}, want: result{stdout: "Machine 'web' running (PID: 41001)\n", stderr: "Starting machine 'web'...\n"}},
				{args: []string{"machine", "stop", "-n", "ghost"}, want: result{stdout: "Machine 'ghost' not found or not running\n"}},
				{args: []string{"machine", "start", "-n", "ghost"}, want: result{code: 1, stderr: "Error: vm not found: ghost\n"}},
				{args: []string{"machine", "status", "-n", "ghost"}, want: result{code: 1, stderr: "Error: vm not found: ghost\n"}},
				{args: createArgs(v080, "web"), want: result{code: 1, stderr: "Error: config operation failed: create machine: machine 'web' already exists\n"}},
				// 0.8.0 deletes a running machine without stopping it.
				{args: []string{"machine", "rm", "web", "-f"}, want: result{stdout: "Cleaning up data directory for vm: web\nDeleted machine: web\n"}},
				{args: []string{"machine", "ls"}, want: result{stdout: "No machines found\n"}},
				{args: deleteArgs(v080, "web", "-f"), want: result{code: 1, stderr: "Error: vm not found: web\n"}},
			},
			orphans: "web\n",
		},
		{
			version: v193,
			steps: []step{
				{args: createArgs(v193, "web", "--cpus", "2", "--mem", "1024"), want: result{stdout: created}},
				{args: []string{"machine", "status", "-n", "web"}, want: result{stdout: "Machine 'web': created\n"}},
				{args: []string{"machine", "stop", "--name", "web"}, want: result{stdout: "Machine 'web' is not running (state: created)\n"}},
				{args: []string{"machine", "start", "--name", "web"}, want: result{stdout: "Machine 'web' running (PID: 41000)\n", stderr: "Starting machine 'web'...\n"}},
				{args: []string{"machine", "start", "-n", "web"}, want: result{stdout: "Machine 'web' already running (PID: 41000)\n"}},
				{args: []string{"machine", "status", "-n", "web"}, want: result{stdout: "Machine 'web': running (PID: 41000)\n"}},
				{args: []string{"machine", "stop", "-n", "web"}, want: result{stdout: "Stopped machine: web\n", stderr: "Stopping machine 'web'...\n"}},
				{args: []string{"machine", "stop", "-n", "web"}, want: result{stdout: "Machine 'web' is not running (state: stopped)\n"}},
				{args: []string{"machine", "status", "-n", "web"}, want: result{stdout: "Machine 'web': stopped\n"}},
				{args: []string{"vm", "start", "-n", "web"}, want: result{stdout: "Machine 'web' running (PID: 41001)\n", stderr: "Starting machine 'web'...\n"}},
				{args: []string{"machine", "stop", "-n", "ghost"}, want: result{code: 1, stderr: "Error: vm not found: ghost\n"}},
				{args: []string{"machine", "start", "-n", "ghost"}, want: result{code: 1, stderr: "Error: vm not found: ghost\n"}},
				{args: []string{"machine", "status", "-n", "ghost"}, want: result{code: 1, stderr: "Error: vm not found: ghost\n"}},
				{args: createArgs(v193, "web"), want: result{code: 1, stderr: "Error: config operation failed: create machine: machine 'web' already exists or is being created\n"}},
				// 1.9 stops a running machine before deleting it.
				{args: []string{"machine", "rm", "--name", "web", "-f"}, want: result{stdout: "Cleaning up data directory for vm: web\nDeleted machine: web\n", stderr: "Stopping machine 'web'...\n"}},
				{args: []string{"machine", "list"}, want: result{stdout: "No machines found\n"}},
				{args: deleteArgs(v193, "web", "-f"), want: result{code: 1, stderr: "Error: vm not found: web\n"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.version)
			for i, s := range tt.steps {
				checkResult(t, fmt.Sprintf("step %d: smolvm %s", i, strings.Join(s.args, " ")), f.runEnv(nil, s.stdin, s.args...), s.want)
			}
			orphans, _ := os.ReadFile(filepath.Join(f.state, "orphans.log"))
			if string(orphans) != tt.orphans {
				t.Errorf("orphans.log = %q, want %q", orphans, tt.orphans)
			}
		})
	}
}

// TestLifecycleJSON follows the state and pid through ls --json, as
// smolvm's test_db.sh does.
func TestLifecycleJSON(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			f.must(createArgs(v, "db", "--mem", "1024")...)
			want := []struct {
				args  []string
				state string
				pid   any
			}{
				{nil, "created", nil},
				{[]string{"machine", "start", "-n", "db"}, "running", float64(41000)},
				{[]string{"machine", "stop", "-n", "db"}, "stopped", nil},
				{[]string{"machine", "start", "-n", "db"}, "running", float64(41001)},
			}
			for _, w := range want {
				if w.args != nil {
					f.must(w.args...)
				}
				m := f.machine("db")
				if m["state"] != w.state || m["pid"] != w.pid || m["memory_mib"] != float64(1024) {
					t.Errorf("after %q: state %v pid %v memory_mib %v, want %s %v 1024", w.args, m["state"], m["pid"], m["memory_mib"], w.state, w.pid)
				}
			}
		})
	}
}

func TestStartWithoutNameCreatesDefault(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			checkResult(t, "start", f.run("machine", "start"),
				result{stdout: "Machine 'default' running (PID: 41000)\n", stderr: "Starting machine 'default'...\n"})
			m := f.machine("default")
			if m == nil || m["state"] != "running" || m["cpus"] != float64(4) || m["memory_mib"] != float64(8192) {
				t.Fatalf("default machine = %v, want running with 4 CPUs and 8192 MiB", m)
			}
			checkResult(t, "exec without --name", f.run("machine", "exec", "--", "echo", "hi"), result{stdout: "hi\n"})
			checkResult(t, "status without -n", f.run("machine", "status"), result{stdout: "Machine 'default': running (PID: 41000)\n"})
		})
	}
}

func TestDeleteConfirmation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stdin   string
		deleted bool
	}{
		{"EOF", "", false},
		{"no", "n\n", false},
		{"anything", "sure\n", false},
		{"y", "y\n", true},
		{"YES with spaces", "  YES \n", true},
	}
	for _, v := range dialects {
		for _, tt := range tests {
			t.Run(v+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				f := newFake(t, v)
				f.must(createArgs(v, "web")...)
				want := result{stdout: "Cancelled\n", stderr: "Delete machine 'web'? [y/N] "}
				if tt.deleted {
					want.stdout = "Cleaning up data directory for vm: web\nDeleted machine: web\n"
				}
				checkResult(t, "delete", f.runEnv(nil, tt.stdin, deleteArgs(v, "web")...), want)
				if got := f.machine("web") == nil; got != tt.deleted {
					t.Errorf("machine deleted = %v, want %v", got, tt.deleted)
				}
			})
		}
	}
}

func TestArgvRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		version string
		args    []string
		want    string // a fragment of stderr
	}{
		{"1.9 create positional", v193, []string{"machine", "create", "web"}, "error: unexpected argument 'web' found"},
		{"0.8 create --name", v080, []string{"machine", "create", "--name", "web"}, "error: unexpected argument '--name' found"},
		{"0.8 create -n", v080, []string{"machine", "create", "-n", "web"}, "error: unexpected argument '-n' found"},
		{"0.8 create --label", v080, []string{"machine", "create", "web", "--label", "owner=exo"}, "error: unexpected argument '--label' found"},
		{"0.8 create -- CMD", v080, []string{"machine", "create", "web", "--", "sleep", "1"}, "error: unexpected argument 'sleep' found"},
		{"0.8 create two names", v080, []string{"machine", "create", "a", "b"}, "error: unexpected argument 'b' found"},
		{"1.9 label without =", v193, []string{"machine", "create", "--label", "owner"}, "invalid value 'owner' for '--label <KEY=VALUE>'"},
		{"0.8 exec -n", v080, []string{"machine", "exec", "-n", "web", "--", "true"}, "error: unexpected argument '-n' found"},
		{"1.9 exec -n", v193, []string{"machine", "exec", "-n", "web", "--", "true"}, "error: unexpected argument '-n' found"},
		{"exec without command", v080, []string{"machine", "exec", "--name", "web"}, "the following required arguments were not provided:\n  <COMMAND>..."},
		{"exec timeout 0", v193, []string{"machine", "exec", "--name", "web", "--timeout", "0s", "--", "true"}, "invalid value '0s' for '--timeout <DURATION>'"},
		{"exec timeout without unit", v080, []string{"machine", "exec", "--name", "web", "--timeout", "30", "--", "true"}, "time unit needed"},
		{"1.9 delete positional", v193, []string{"machine", "delete", "web", "-f"}, "error: unexpected argument 'web' found"},
		{"1.9 delete without --name", v193, []string{"machine", "delete", "-f"}, "the following required arguments were not provided:\n  --name <NAME>"},
		{"0.8 delete --name", v080, []string{"machine", "delete", "--name", "web", "-f"}, "error: unexpected argument '--name' found"},
		{"0.8 delete without name", v080, []string{"machine", "delete", "-f"}, "the following required arguments were not provided:\n  <NAME>"},
		{"from with image", v193, []string{"machine", "create", "--from", "x", "--image", "alpine"}, "the argument '--from <PATH>' cannot be used with '--image <IMAGE>'"},
		{"from with smolfile", v080, []string{"machine", "create", "--from", "x", "-s", "y"}, "the argument '--from <PATH>' cannot be used with '--smolfile <PATH>'"},
		{"unknown flag", v080, []string{"machine", "create", "--bogus"}, "error: unexpected argument '--bogus' found"},
		{"bad cpus", v193, []string{"machine", "create", "--cpus", "many"}, "invalid value 'many' for '--cpus <N>': invalid digit found in string"},
		{"cpus overflow", v080, []string{"machine", "create", "--cpus", "300"}, "number too large to fit in target type"},
		{"bad cidr", v193, []string{"machine", "create", "--allow-cidr", "10.0.0.0/40"}, "invalid CIDR '10.0.0.0/40': IPv4 prefix must be 0-32"},
		{"bad port", v080, []string{"machine", "create", "-p", "80:x"}, "invalid value '80:x' for '--port <HOST:GUEST>'"},
		{"bad net backend", v193, []string{"machine", "create", "--net-backend", "slirp"}, "invalid value 'slirp' for '--net-backend <BACKEND>'"},
		{"missing value", v080, []string{"machine", "start", "--name"}, "a value is required for '--name <NAME>' but none was supplied"},
		{"repeated name", v080, []string{"machine", "start", "-n", "a", "-n", "b"}, "the argument '--name <NAME>' cannot be used multiple times"},
		{"pack positional image", v080, []string{"pack", "create", "alpine", "-o", "out"}, "error: unexpected argument 'alpine' found"},
		{"pack without image", v193, []string{"pack", "create", "-o", "out"}, "the following required arguments were not provided:\n  --image <IMAGE>"},
		{"pack without output", v080, []string{"pack", "create", "-I", "alpine"}, "the following required arguments were not provided:\n  --output <OUTPUT>"},
		{"pack image with from-vm", v193, []string{"pack", "create", "-I", "alpine", "--from-vm", "a", "-o", "out"}, "the argument '--image <IMAGE>' cannot be used with '--from-vm <NAME>'"},
		{"unknown machine subcommand", v080, []string{"machine", "frobnicate"}, "error: unrecognized subcommand 'frobnicate'"},
		{"not emulated subcommand", v193, []string{"serve", "start"}, "error: unrecognized subcommand 'serve'"},
		{"unknown top-level flag", v080, []string{"--bogus"}, "error: unexpected argument '--bogus' found"},
		{"no arguments", v080, nil, "Usage: smolvm [OPTIONS] <COMMAND>"},
		{"machine without subcommand", v193, []string{"vm"}, "requires a subcommand"},
		{"1.8 fork in 0.8", v080, []string{"machine", "fork"}, "error: unrecognized subcommand 'fork'"},
		{"run -n without -d", v080, []string{"machine", "run", "-n", "x", "--", "true"}, "  --detach"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.version)
			r := f.run(tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("smolvm %q: exit %d, stdout %q, stderr %q; want exit 2 and stderr containing %q", tt.args, r.code, r.stdout, r.stderr, tt.want)
			}
			if tt.args != nil && !strings.HasSuffix(r.stderr, "For more information, try '--help'.\n") {
				t.Errorf("stderr %q does not end like a clap usage error", r.stderr)
			}
			if s := f.stateBytes(); s != "" {
				t.Errorf("a rejected command wrote machines.json:\n%s", s)
			}
		})
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	archive := filepath.Join(dir, "img.tar")
	if err := os.WriteFile(archive, []byte("tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	const op = "Error: config operation failed: create machine: "
	tests := []struct {
		name    string
		version string
		args    []string // after "machine create"
		want    string   // "" for success, else the exact stderr
	}{
		{"name of 128", v080, []string{strings.Repeat("a", 128)}, ""},
		{"name of 129", v080, []string{strings.Repeat("a", 129)}, op + "machine name too long: 129 characters (max 128)\n"},
		{"name starting with -", v193, []string{"--name=-x"}, op + "machine name must start with a letter or digit\n"},
		{"name starting with _", v080, []string{"_x"}, op + "machine name must start with a letter or digit\n"},
		{"name with dot", v080, []string{"a.b"}, op + "machine name contains invalid character '.': only letters, digits, '-' and '_' are allowed\n"},
		{"name with --", v193, []string{"--name", "a--b"}, op + "machine name cannot contain '--'\n"},
		{"name ending in -", v080, []string{"ab-"}, op + "machine name cannot end with '-'\n"},
		{"empty name", v193, []string{"--name="}, op + "machine name cannot be empty\n"},
		{"name with _ and -", v193, []string{"--name", "Ab_9-x"}, ""},
		{"mem 1", v080, []string{"m", "--mem", "1"}, op + "memory must be at least 64 MiB, got 1\n"},
		{"mem 64", v193, []string{"-n", "m", "--mem", "64"}, ""},
		{"cpus 0", v080, []string{"m", "--cpus", "0"}, op + "cpus must be at least 1, got 0\n"},
		{"storage 0", v193, []string{"-n", "m", "--storage", "0"}, op + "storage disk size must be at least 1 GiB, got 0\n"},
		{"overlay 0", v080, []string{"m", "--overlay", "0"}, op + "overlay disk size must be at least 1 GiB, got 0\n"},
		{"from missing", v080, []string{"m", "--from", filepath.Join(dir, "none.smolmachine")}, op + "--from '" + filepath.Join(dir, "none.smolmachine") + "': No such file or directory (os error 2)\n"},
		{"1.9 archive missing", v193, []string{"-n", "m", "--image", "./none.tar"}, op + "image archive './none.tar': No such file or directory (os error 2)\n"},
		{"1.9 archive", v193, []string{"-n", "m", "--image", archive}, ""},
		{"1.9 directory", v193, []string{"-n", "m", "--image", dir}, ""},
		{"0.8 path is a reference", v080, []string{"m", "--image", "./none.tar"}, ""},
		{"volume host missing", v080, []string{"m", "-v", filepath.Join(dir, "nope") + ":/data"}, op + "volume host path '" + filepath.Join(dir, "nope") + "': No such file or directory (os error 2)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.version)
			r := f.run(append([]string{"machine", "create"}, tt.args...)...)
			if tt.want == "" {
				if r.code != 0 {
					t.Fatalf("exit %d, stderr %q; want success", r.code, r.stderr)
				}
				return
			}
			checkResult(t, "create", r, result{code: 1, stderr: tt.want})
			if len(f.ls()) != 0 {
				t.Errorf("a rejected create persisted a machine")
			}
		})
	}
}

func TestGeneratedNames(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^Created machine: (vm-[0-9a-f]{8})\n`)
	tests := []struct {
		version string
		args    []string
	}{
		{v080, []string{"machine", "create"}},
		{v193, []string{"machine", "create"}},
		{v193, []string{"machine", "create", "--name"}},
		{v193, []string{"machine", "create", "--name", "--cpus", "1"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{tt.version}, tt.args...), " "), func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.version)
			a, b := f.must(tt.args...), f.must(tt.args...)
			ma, mb := re.FindStringSubmatch(a.stdout), re.FindStringSubmatch(b.stdout)
			if ma == nil || mb == nil || ma[1] == mb[1] {
				t.Fatalf("want two different vm-xxxxxxxx names, got %q and %q", a.stdout, b.stdout)
			}
			if f.machine(ma[1]) == nil || f.machine(mb[1]) == nil {
				t.Errorf("generated machines are not listed")
			}
		})
	}
}

func TestCreateRecordsFlags(t *testing.T) {
	t.Parallel()
	vol := t.TempDir()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			flags := []string{
				"-e", "A=1", "-e", "DROPPED", "-e", "=x", "--env", "C=2=3",
				"--allow-cidr", "10.0.0.0/8", "--allow-cidr", "1.2.3.4",
				"--init", "echo hi", "-w", "/work",
				"-v", vol + ":/data:ro", "-p", "8080:80", "-p", "9000",
				"--storage", "30",
			}
			if v == v193 {
				flags = append(flags, "--label", "owner=exo", "--dns", "1.1.1.1", "--", "sleep", "--cpus", "2")
			}
			r := f.must(createArgs(v, "web", flags...)...)
			wantOut := "Created machine: web\n  CPUs: 4, Memory: 8192 MiB\n  Mounts: 1\n  Ports: 2\n  Init commands: 1\n" +
				"\nUse 'smolvm machine start --name web' to start the machine\n" +
				"Then use 'smolvm machine exec --name web -- <command>' to run commands\n"
			if r.stdout != wantOut {
				t.Errorf("stdout %q, want %q", r.stdout, wantOut)
			}
			m := f.machine("web")
			fk := m["fake"].(map[string]any)
			checks := map[string]struct{ got, want any }{
				"network":          {m["network"], true},
				"mounts":           {m["mounts"], float64(1)},
				"ports":            {m["ports"], float64(2)},
				"storage_gb":       {m["storage_gb"], float64(30)},
				"overlay_gb":       {m["overlay_gb"], nil},
				"fake.env":         {fk["env"], []any{"A=1", "C=2=3"}},
				"fake.allow_cidrs": {fk["allow_cidrs"], []any{"10.0.0.0/8", "1.2.3.4/32"}},
				"fake.init":        {fk["init"], []any{"echo hi"}},
				"fake.workdir":     {fk["workdir"], "/work"},
				"fake.volumes":     {fk["volumes"], []any{vol + ":/data:ro"}},
				"fake.root":        {fk["root"], f.root("web")},
			}
			if v == v193 {
				checks["labels"] = struct{ got, want any }{m["labels"], map[string]any{"owner": "exo"}}
				checks["cmd"] = struct{ got, want any }{m["cmd"], []any{"sleep", "--cpus", "2"}}
				checks["fake.extra"] = struct{ got, want any }{fk["extra"], map[string]any{"dns": []any{"1.1.1.1"}}}
				if want := "note: '--cpus' comes after '--'"; !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q does not contain %q", r.stderr, want)
				}
			}
			for k, c := range checks {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s = %#v, want %#v", k, c.got, c.want)
				}
			}
		})
	}
}

func TestAllowHostImpliesNetwork(t *testing.T) {
	t.Parallel()
	f := newFake(t, v080)
	f.must("machine", "create", "a")
	f.must("machine", "create", "b", "--allow-host", "example.com")
	f.must("machine", "create", "c", "--net")
	for name, want := range map[string]bool{"a": false, "b": true, "c": true} {
		if got := f.machine(name)["network"]; got != want {
			t.Errorf("%s: network = %v, want %v", name, got, want)
		}
	}
}

func TestUpdateRunningIsInvalidState(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			f.must(createArgs(v, "web")...)
			update := append([]string{"machine", "update"}, nameArgs(v, "web")...)
			f.must(append(update, "--cpus", "2")...)
			f.must("machine", "start", "-n", "web")
			checkResult(t, "update running", f.run(append(update, "--mem", "512")...),
				result{code: 1, stderr: "Error: invalid vm state: expected stopped, got Running\n"})
			if m := f.machine("web"); m["cpus"] != float64(2) || m["memory_mib"] != float64(8192) {
				t.Errorf("cpus %v memory %v, want 2 and 8192", m["cpus"], m["memory_mib"])
			}
		})
	}
}

// TestConcurrentCreates races creates of different names, then starts of
// them all: the lock must keep every record and give unique pids.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			const n = 10
			var wg sync.WaitGroup
			results := make([]result, n)
			for i := range n {
				wg.Go(func() { results[i] = f.run(createArgs(v, fmt.Sprintf("c%d", i))...) })
			}
			wg.Wait()
			for i, r := range results {
				if r.code != 0 {
					t.Errorf("create c%d: exit %d: %s", i, r.code, r.stderr)
				}
			}
			for i := range n {
				wg.Go(func() { results[i] = f.run("machine", "start", "-n", fmt.Sprintf("c%d", i)) })
			}
			wg.Wait()
			ms := f.ls()
			if len(ms) != n {
				t.Fatalf("ls --json has %d machines, want %d", len(ms), n)
			}
			pids := map[any]bool{}
			for _, m := range ms {
				if m["state"] != "running" {
					t.Errorf("%v: state %v, want running", m["name"], m["state"])
				}
				pids[m["pid"]] = true
			}
			if len(pids) != n {
				t.Errorf("pids %v are not unique", pids)
			}
			if got := len(f.argv()); got != 2*n+1 {
				t.Errorf("argv.log has %d lines, want %d", got, 2*n+1)
			}
		})
	}
}

func TestArgvLog(t *testing.T) {
	t.Parallel()
	f := newFake(t, v193)
	calls := [][]string{
		{"machine", "create", "--name", "web", "-e", "A=b c"},
		{"machine", "exec", "-n", "web", "--", "true"}, // rejected, still logged
		{"machine", "start", "--name", "web"},
		{"machine", "ls", "--json"},
		{"--version"},
	}
	for _, c := range calls {
		f.run(c...)
	}
	f.run()
	want := append(calls, []string{})
	if got := f.argv(); !reflect.DeepEqual(got, want) {
		t.Errorf("argv.log = %q, want %q", got, want)
	}
}

func TestStateIsRequired(t *testing.T) {
	t.Parallel()
	f := newFake(t, v080)
	f.env = []string{"PATH=" + os.Getenv("PATH")}
	checkResult(t, "ls", f.run("machine", "ls"), result{code: 1, stderr: "Error: fake smolvm: FAKE_SMOLVM_STATE is not set\n"})
	checkResult(t, "--version", f.run("--version"), result{stdout: "smolvm 0.8.0\n" + Announcement + "\n"})
	checkResult(t, "bad version", f.runEnv([]string{"FAKE_SMOLVM_VERSION=1.0.0"}, "", "--version"),
		result{code: 1, stderr: "Error: fake smolvm: FAKE_SMOLVM_VERSION=\"1.0.0\": want 0.8.0 or 1.9.3\n"})
}

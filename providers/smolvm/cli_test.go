package smolvm

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/guest"
)

var (
	v080 = Version{0, 8, 0}
	v101 = Version{1, 0, 1}
	v102 = Version{1, 0, 2}
	v173 = Version{1, 7, 3}
	v180 = Version{1, 8, 0}
	v193 = Version{1, 9, 3}
)

func TestCreateArgs(t *testing.T) {
	t.Parallel()
	full := createOpts{
		Name: "bottle-hello-agent", From: "/c/packs/k/agent.smolmachine",
		AllowCIDRs: []string{"10.0.0.2/32", "192.0.2.0/24"},
		Env:        []string{"Z=1", "A=2"},
		CPUs:       2, MemoryMiB: 1024, Workdir: "/work",
		Labels: map[string]string{"io.bottle-apply.role": "agent", "io.bottle-apply.name": "hello"},
		Cmd:    []string{"sleep", "infinity"},
	}
	image := createOpts{Name: "n", Image: "/c/images/k.tar"}
	tests := []struct {
		name string
		v    Version
		o    createOpts
		want string
	}{
		{"0.8.0 positional name, no labels, no command", v080, full,
			"machine create bottle-hello-agent --from /c/packs/k/agent.smolmachine --allow-cidr 10.0.0.2/32 --allow-cidr 192.0.2.0/24 -e A=2 -e Z=1 --cpus 2 --mem 1024 -w /work"},
		{"1.0.1 still positional", v101, full,
			"machine create bottle-hello-agent --from /c/packs/k/agent.smolmachine --allow-cidr 10.0.0.2/32 --allow-cidr 192.0.2.0/24 -e A=2 -e Z=1 --cpus 2 --mem 1024 -w /work"},
		{"1.0.2 --name", v102, full,
			"machine create --name bottle-hello-agent --from /c/packs/k/agent.smolmachine --allow-cidr 10.0.0.2/32 --allow-cidr 192.0.2.0/24 -e A=2 -e Z=1 --cpus 2 --mem 1024 -w /work"},
		{"1.7.3 no labels yet", v173, full,
			"machine create --name bottle-hello-agent --from /c/packs/k/agent.smolmachine --allow-cidr 10.0.0.2/32 --allow-cidr 192.0.2.0/24 -e A=2 -e Z=1 --cpus 2 --mem 1024 -w /work"},
		{"1.8.0 labels sorted by key, no command", v180, full,
			"machine create --name bottle-hello-agent --from /c/packs/k/agent.smolmachine --allow-cidr 10.0.0.2/32 --allow-cidr 192.0.2.0/24 -e A=2 -e Z=1 --cpus 2 --mem 1024 -w /work " +
				"--label io.bottle-apply.name=hello --label io.bottle-apply.role=agent"},
		{"1.9.3 labels and the command after --", v193, full,
			"machine create --name bottle-hello-agent --from /c/packs/k/agent.smolmachine --allow-cidr 10.0.0.2/32 --allow-cidr 192.0.2.0/24 -e A=2 -e Z=1 --cpus 2 --mem 1024 -w /work " +
				"--label io.bottle-apply.name=hello --label io.bottle-apply.role=agent -- sleep infinity"},
		{"1.9.3 image archive, defaults omitted", v193, image,
			"machine create --name n --image /c/images/k.tar"},
		{"0.8.0 image", v080, image, "machine create n --image /c/images/k.tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := createArgs(tt.v, tt.o)
			if want := strings.Fields(tt.want); !slices.Equal(got, want) {
				t.Errorf("createArgs:\n got  %q\n want %q", got, want)
			}
		})
	}
}

func TestCreateArgsDoesNotSortCallerSlice(t *testing.T) {
	t.Parallel()
	env := []string{"Z=1", "A=2"}
	createArgs(v193, createOpts{Name: "n", Image: "i", Env: env})
	if env[0] != "Z=1" {
		t.Errorf("createArgs sorted its argument: %q", env)
	}
}

func TestArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  []string
		want string
	}{
		{"version", versionArgs(), "--version"},
		{"start", startArgs("m"), "machine start --name m"},
		{"stop", stopArgs("m"), "machine stop --name m"},
		{"delete 0.8.0 positional", deleteArgs(v080, "m"), "machine delete m -f"},
		{"delete 1.0.1 positional", deleteArgs(v101, "m"), "machine delete m -f"},
		{"delete 1.0.2 --name", deleteArgs(v102, "m"), "machine delete --name m -f"},
		{"delete 1.9.3 --name", deleteArgs(v193, "m"), "machine delete --name m -f"},
		{"ls", lsArgs(), "machine ls --json"},
		{"status", statusArgs("m"), "machine status --name m --json"},
		{"exec plain", execArgs("m", guest.ExecOptions{Cmd: []string{"ls", "-l"}}), "machine exec --name m -- ls -l"},
		{"exec all flags", execArgs("m", guest.ExecOptions{
			Cmd: []string{"sh", "-c", "echo $A"}, Env: []string{"B=1", "A=2"}, Workdir: "/w", Interactive: true, TTY: true,
		}), "machine exec --name m -i -t -w /w -e B=1 -e A=2 -- sh -c echo_$A"},
		{"exec command that looks like a flag", execArgs("m", guest.ExecOptions{Cmd: []string{"--help"}}), "machine exec --name m -- --help"},
		{"cp upload", cpArgs("./f", "m:/p"), "machine cp ./f m:/p"},
		{"cp download", cpArgs("m:/p", "./f"), "machine cp m:/p ./f"},
		{"pack create", packCreateArgs("127.0.0.1:5000/agent:1", "/c/packs/k/agent"), "pack create -I 127.0.0.1:5000/agent:1 -o /c/packs/k/agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := strings.Fields(tt.want)
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "_", " ")
			}
			if !slices.Equal(tt.got, want) {
				t.Errorf("\n got  %q\n want %q", tt.got, want)
			}
			if slices.Contains(tt.got, "exec") && slices.Contains(tt.got, "-n") {
				t.Errorf("exec must never use -n: %q", tt.got)
			}
		})
	}
}

func TestCLICpWithEmptySideRunsNothing(t *testing.T) {
	t.Parallel()
	c := cli{r: newFakeRunner(t, nil), bin: "smolvm"}
	for _, p := range [][2]string{{"", "m:/p"}, {"./f", ""}, {"", ""}} {
		if err := c.cp(t.Context(), p[0], p[1]); err != nil {
			t.Errorf("cp(%q, %q) = %v", p[0], p[1], err)
		}
	}
}

func TestCLICreateNeedsExactlyOneSource(t *testing.T) {
	t.Parallel()
	c := cli{r: newFakeRunner(t, nil), bin: "smolvm"}
	for _, o := range []createOpts{{Name: "n"}, {Name: "n", From: "f", Image: "i"}} {
		if err := c.create(t.Context(), v193, o); err == nil || !strings.HasPrefix(err.Error(), "internal:") {
			t.Errorf("create(%+v) = %v, want an internal error", o, err)
		}
	}
}

func TestCLIExecReturnsTheGuestCode(t *testing.T) {
	t.Parallel()
	f := newFakeRunner(t, nil, call{argv: []string{"smolvm", "machine", "exec", "--name", "m", "--", "false"}, code: 3, stdout: "out"})
	var out bytes.Buffer
	code, err := cli{r: f, bin: "smolvm"}.exec(t.Context(), "m", guest.ExecOptions{Cmd: []string{"false"}}, guest.Stdio{Out: &out})
	if code != 3 || err != nil || out.String() != "out" {
		t.Errorf("exec = %d, %v (output %q), want 3, nil (output \"out\")", code, err, out.String())
	}
	if _, err := (cli{r: f, bin: "smolvm"}).exec(t.Context(), "m", guest.ExecOptions{}, guest.Stdio{}); err == nil {
		t.Error("exec without a command should fail")
	}
}

func TestCLIStatus(t *testing.T) {
	t.Parallel()
	f := newFakeRunner(t, nil, call{argv: []string{"smolvm", "machine", "status", "--name", "myvm", "--json"},
		stdout: string(readTestdata(t, "status-1.9.3.json"))})
	m, err := cli{r: f, bin: "smolvm"}.status(t.Context(), "myvm")
	if err != nil || m.Name != "myvm" || m.State != "running" || m.PID != 41233 {
		t.Errorf("status = %+v, %v", m, err)
	}
}

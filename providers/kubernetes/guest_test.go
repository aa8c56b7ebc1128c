package kubernetes

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/bottle-apply/bottle-apply/bottle"
)

func TestWrapCmd(t *testing.T) {
	t.Parallel()
	const script = `cd -- "$1" || exit 126; shift; exec "$@"`
	cases := []struct {
		name    string
		cmd     []string
		env     []string
		workdir string
		want    []string
		wantErr string
	}{
		{name: "plain", cmd: []string{"id", "-u"}, want: []string{"id", "-u"}},
		{name: "env", cmd: []string{"sh"}, env: []string{"A=1", "B=x y"}, want: []string{"env", "A=1", "B=x y", "sh"}},
		{name: "workdir", cmd: []string{"pwd"}, workdir: "/tmp/a b", want: []string{"/bin/sh", "-c", script, "sh", "/tmp/a b", "pwd"}},
		{name: "both", cmd: []string{"pwd"}, env: []string{"A="}, workdir: "/w",
			want: []string{"/bin/sh", "-c", script, "sh", "/w", "env", "A=", "pwd"}},
		{name: "not NAME=VALUE", cmd: []string{"true"}, env: []string{"A"}, wantErr: "not NAME=VALUE"},
		{name: "empty name", cmd: []string{"true"}, env: []string{"=1"}, wantErr: "not NAME=VALUE"},
		{name: "command with =", cmd: []string{"a=b"}, env: []string{"A=1"}, wantErr: "cannot follow"},
		{name: "command with = and no env", cmd: []string{"a=b"}, want: []string{"a=b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := wrapCmd(tc.cmd, tc.env, tc.workdir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestWrapCmdRuns runs the wrapped commands with this machine's sh and, when
// there is one, busybox's: hostile directory names and values pass as they
// are, and the exit codes are the command's.
func TestWrapCmdRuns(t *testing.T) {
	t.Parallel()
	shells := [][]string{{"/bin/sh"}}
	if bb, err := exec.LookPath("busybox"); err == nil {
		shells = append(shells, []string{bb, "sh"})
	}
	base := t.TempDir()
	weird := filepath.Join(base, `-a "b" $(c) 'd' e`)
	if err := os.Mkdir(weird, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		cmd, env []string
		workdir  string
		out      string
		code     int
	}{
		{name: "workdir", cmd: []string{"pwd"}, workdir: weird, out: weird + "\n"},
		{name: "env", cmd: []string{"sh", "-c", `printf '%s|%s' "$A" "$B"`}, env: []string{"A=$(x) `y`", `B='q' "r"`}, out: "$(x) `y`|'q' \"r\""},
		{name: "both", cmd: []string{"sh", "-c", `printf '%s %s' "$A" "$PWD"`}, env: []string{"A=1"}, workdir: weird, out: "1 " + weird},
		{name: "exit code", cmd: []string{"sh", "-c", "exit 7"}, workdir: base, code: 7},
		{name: "missing workdir", cmd: []string{"true"}, workdir: filepath.Join(base, "nope"), code: 126},
		{name: "missing command", cmd: []string{"no-such-command-here"}, workdir: base, code: 127},
	}
	for _, sh := range shells {
		for _, tc := range cases {
			t.Run(filepath.Base(sh[0])+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				argv, err := wrapCmd(tc.cmd, tc.env, tc.workdir)
				if err != nil {
					t.Fatal(err)
				}
				if argv[0] == "/bin/sh" {
					argv = append(slices.Clone(sh), argv[1:]...)
				}
				cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
				var out bytes.Buffer
				cmd.Stdout = &out
				err = cmd.Run()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tc.code {
					t.Fatalf("exit code %d, want %d (%q)", code, tc.code, argv)
				}
				if tc.code == 0 && out.String() != tc.out {
					t.Fatalf("output %q, want %q", out.String(), tc.out)
				}
			})
		}
	}
}

func TestCheckUser(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, want, runAs string
		wantErr           string
	}{
		{name: "none asked", want: "", runAs: "1000"},
		{name: "none asked, none known", want: ""},
		{name: "the pod's", want: "1000", runAs: "1000"},
		{name: "the pod's with its group", want: "1000:2000", runAs: "1000:2000"},
		{name: "the pod's uid, any group", want: "1000", runAs: "1000:2000"},
		{name: "another uid", want: "0", runAs: "1000", wantErr: "cannot switch users"},
		{name: "another gid", want: "1000:0", runAs: "1000:2000", wantErr: "which is 1000:2000"},
		{name: "a gid the pod does not say", want: "1000:1000", runAs: "1000", wantErr: "cannot switch"},
		{name: "unknown", want: "1000", wantErr: "sets no runAsUser"},
		{name: "not numeric", want: "root", runAs: "0", wantErr: "not a numeric"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkUser(tc.want, tc.runAs)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestPodUser(t *testing.T) {
	t.Parallel()
	id := func(n int64) *int64 { return &n }
	p := &corev1.Pod{Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: id(1000), RunAsGroup: id(1000)},
		Containers: []corev1.Container{
			{Name: "agent", SecurityContext: &corev1.SecurityContext{RunAsUser: id(2000)}},
			{Name: "bundle"},
		},
	}}
	if got := podUser(p, "agent"); got != "2000:1000" {
		t.Errorf("agent: %q", got)
	}
	if got := podUser(p, "bundle"); got != "1000:1000" {
		t.Errorf("bundle: %q", got)
	}
	if got := podUser(&corev1.Pod{}, "agent"); got != "" {
		t.Errorf("none: %q", got)
	}
}

func pod(ns, name, bottleName, role string, phase corev1.PodPhase, state corev1.ContainerState) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if bottleName != "" {
		p.Labels = map[string]string{bottle.LabelName: bottleName, bottle.LabelRole: role}
	}
	if phase != corev1.PodPending || state.Waiting != nil {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: role, State: state}}
	}
	return p
}

var running = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}

func TestPickPod(t *testing.T) {
	t.Parallel()
	pullBackOff := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "x"`}}
	crash := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	gone := pod("a", "bottle-h-agent-0", "h", "agent", corev1.PodRunning, running)
	gone.DeletionTimestamp = &metav1.Time{}
	unschedulable := pod("a", "bottle-h-agent-0", "h", "agent", corev1.PodPending, corev1.ContainerState{})
	unschedulable.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes are available"}}
	cases := []struct {
		name      string
		pods      []corev1.Pod
		namespace string
		want      string // the pod's name
		wantErr   string
	}{
		{name: "running", pods: []corev1.Pod{pod("a", "bottle-h-agent-0", "h", "agent", corev1.PodRunning, running)}, want: "bottle-h-agent-0"},
		{name: "none", wantErr: "bottle h has no agent pod on the cluster"},
		{name: "none in the namespace", namespace: "a", wantErr: "in namespace a"},
		{name: "our name without our labels", pods: []corev1.Pod{pod("a", "bottle-h-agent-0", "", "", corev1.PodRunning, running)}, wantErr: "has no agent pod"},
		{name: "another bottle's", pods: []corev1.Pod{pod("a", "bottle-g-agent-0", "g", "agent", corev1.PodRunning, running)}, wantErr: "has no agent pod"},
		{name: "another role", pods: []corev1.Pod{pod("a", "bottle-h-bundle-0", "h", "bundle", corev1.PodRunning, running)}, wantErr: "has no agent pod"},
		{name: "image pull", pods: []corev1.Pod{pod("a", "bottle-h-agent-0", "h", "agent", corev1.PodPending, pullBackOff)},
			wantErr: `(pod a/bottle-h-agent-0) is not running: Pending, ImagePullBackOff: Back-off pulling image "x"; fix the spec and apply it (bottle-apply -f SPEC)`},
		{name: "crash loop in a running pod", pods: []corev1.Pod{pod("a", "bottle-h-agent-0", "h", "agent", corev1.PodRunning, crash)},
			wantErr: "is not running: Running, CrashLoopBackOff"},
		{name: "unschedulable", pods: []corev1.Pod{unschedulable}, wantErr: "Pending, Unschedulable: 0/1 nodes are available"},
		{name: "terminated", pods: []corev1.Pod{pod("a", "p", "h", "agent", corev1.PodFailed, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}})},
			wantErr: "Failed, Error, exit code 2"},
		{name: "the one that stays", pods: []corev1.Pod{gone, pod("a", "bottle-h-agent-1", "h", "agent", corev1.PodRunning, running)}, want: "bottle-h-agent-1"},
		{name: "only one being deleted", pods: []corev1.Pod{gone}, wantErr: "Running, being deleted"},
		{name: "several namespaces", pods: []corev1.Pod{pod("b", "p", "h", "agent", corev1.PodRunning, running), pod("a", "p", "h", "agent", corev1.PodRunning, running)},
			wantErr: "several namespaces (a, b)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := pickPod(tc.pods, tc.namespace, "h", bottle.RoleAgent)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.want {
				t.Fatalf("got %s, want %s", got.Name, tc.want)
			}
		})
	}
}

func TestFindPod(t *testing.T) {
	t.Parallel()
	ours := pod("a", "bottle-h-agent-0", "h", "agent", corev1.PodRunning, running)
	impostor := pod("b", "bottle-h-agent-0", "", "", corev1.PodRunning, running)
	other := pod("c", "bottle-g-agent-0", "g", "agent", corev1.PodRunning, running)
	c := &Cluster{Client: fake.NewClientset(&ours, &impostor, &other)}
	for _, ns := range []string{"", "a"} {
		p, err := c.FindPod(t.Context(), ns, "h", bottle.RoleAgent)
		if err != nil {
			t.Fatalf("namespace %q: %v", ns, err)
		}
		if p.Namespace != "a" {
			t.Fatalf("namespace %q: found %s/%s", ns, p.Namespace, p.Name)
		}
	}
	_, err := c.FindPod(t.Context(), "b", "h", bottle.RoleAgent)
	if !errors.Is(err, ErrNoBottle) {
		t.Fatalf("a pod with our name but not our labels: err = %v", err)
	}
}

func TestCopyInTarget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src, dst string
		isDir          bool
		existing       string
		dir, as        string
	}{
		{name: "file into a directory", src: "/h/f.txt", dst: "/tmp/in", isDir: true, dir: "/tmp/in", as: "f.txt"},
		{name: "directory into a directory", src: "/h/tree/", dst: "/tmp", isDir: true, dir: "/tmp", as: "tree"},
		{name: "file to a new name", src: "/h/f.txt", dst: "/tmp/in/g", existing: "/tmp/in", dir: "/tmp/in", as: "g"},
		{name: "missing parents", src: "/h/tree", dst: "/tmp/a/b/t2", existing: "/tmp", dir: "/tmp", as: "a/b/t2"},
		{name: "from the root", src: "f", dst: "/a/b", existing: "/", dir: "/", as: "a/b"},
		{name: "contents into a directory", src: "/h/tree/.", dst: "/tmp/in", isDir: true, dir: "/tmp/in", as: ""},
		{name: "contents to a new directory", src: "/h/tree/.", dst: "/tmp/a/new", existing: "/tmp", dir: "/tmp", as: "a/new"},
		{name: "relative", src: "f", dst: "x", existing: ".", dir: ".", as: "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, as, err := copyInTarget(tc.src, tc.dst, tc.isDir, tc.existing)
			if err != nil || dir != tc.dir || as != tc.as {
				t.Fatalf("got %q, %q, %v; want %q, %q", dir, as, err, tc.dir, tc.as)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	const prefix = `Internal error occurred: error executing command in container: failed to exec in container: failed to start exec "1d52": `
	cases := []struct {
		err  string
		code int
		ok   bool
	}{
		{prefix + `OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": executable file not found in $PATH: unknown`, 127, true},
		{prefix + `OCI runtime exec failed: exec failed: unable to start container process: exec: "/nope": stat /nope: no such file or directory: unknown`, 127, true},
		{prefix + `OCI runtime exec failed: exec failed: unable to start container process: exec: "/etc/passwd": permission denied: unknown`, 126, true},
		{`Internal error occurred: error executing command in container: container not found ("agent")`, 0, false},
		{`pods "x" not found`, 0, false},
	}
	for _, tc := range cases {
		code, msg, ok := startFailure(errors.New(tc.err))
		if code != tc.code || ok != tc.ok || ok && !strings.HasPrefix(msg, "OCI runtime exec failed") {
			t.Errorf("startFailure(%q) = %d, %q, %v; want %d, %v", tc.err, code, msg, ok, tc.code, tc.ok)
		}
	}
}

func TestParseProbe(t *testing.T) {
	t.Parallel()
	if d, _, err := parseProbe("dir\n"); err != nil || !d {
		t.Errorf("dir: %v %v", d, err)
	}
	if d, e, err := parseProbe("new\n/a b\nc"); err != nil || d || e != "/a b\nc" {
		t.Errorf("new: %v %q %v", d, e, err)
	}
	if _, _, err := parseProbe("sh: oops"); err == nil {
		t.Error("garbage: no error")
	}
}

func TestMissingBelow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		existing, dir string
		want          []string
	}{
		{"/", "/a/b", []string{"a", "b"}},
		{"/a", "/a", nil},
		{"/a", "/a/b/c", []string{"b", "c"}},
		{".", "x/y", []string{"x", "y"}},
	}
	for _, tc := range cases {
		got, err := missingBelow(tc.existing, tc.dir)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("missingBelow(%q, %q) = %q, %v; want %q", tc.existing, tc.dir, got, err, tc.want)
		}
	}
	if _, err := missingBelow("/x", "/a/b"); err == nil {
		t.Error("not below: no error")
	}
}

func TestSizeQueue(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	size := &remotecommand.TerminalSize{Height: 33, Width: 101}
	q := &sizeQueue{size: size, done: done}
	if got := q.Next(); got != size {
		t.Fatalf("Next() = %v, want the size", got)
	}
	next := make(chan *remotecommand.TerminalSize)
	go func() { next <- q.Next() }()
	select {
	case got := <-next:
		t.Fatalf("Next() before done = %v, want it to wait", got)
	case <-time.After(50 * time.Millisecond):
	}
	close(done)
	if got := <-next; got != nil {
		t.Fatalf("Next() after done = %v", got)
	}
}

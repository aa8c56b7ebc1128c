package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/internal/lock"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
)

// remote is the local engine reached as a remote one, each way the docker
// CLI offers: ssh through an sshd the test starts; tcp with TLS through a
// front the test starts, which wants a client certificate (the
// environment's DOCKER_TLS_VERIFY and DOCKER_CERT_PATH); and a docker
// context naming that front, with its TLS material in the context store.
type remote struct {
	sshd  *testenv.SSHD
	certs *testenv.Certs
	front *testenv.TLSFront
	kinds []connKind
}

// connKind is one way to the engine: the environment that names it.
type connKind struct {
	name string
	env  []string
}

// plainEnv clears what names an engine, so that only a kind's own
// variables do.
var plainEnv = []string{"DOCKER_HOST=", "DOCKER_CONTEXT=", "DOCKER_TLS_VERIFY=", "DOCKER_CERT_PATH="}

func startRemote(t *testing.T) *remote {
	t.Helper()
	sock, err := testenv.UnixSocket()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	r := &remote{sshd: testenv.StartSSHD(t, sock), certs: testenv.NewCerts(t)}
	r.front = testenv.StartTLSFront(t, r.certs, sock)
	tlsEnv := []string{"DOCKER_HOST=tcp://" + r.front.Addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + r.certs.ClientDir(t)}

	// The context is made by the docker CLI, as a user would.
	cfg := t.TempDir()
	dir := r.certs.ClientDir(t)
	ctxName := testenv.Name("bottle-apply-test")
	cmd := exec.Command("docker", "context", "create", ctxName, "--docker",
		"host=tcp://"+r.front.Addr+",ca="+filepath.Join(dir, "ca.pem")+",cert="+filepath.Join(dir, "cert.pem")+",key="+filepath.Join(dir, "key.pem"))
	cmd.Env = append(os.Environ(), append(slices.Clone(plainEnv), "DOCKER_CONFIG="+cfg)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker context create: %v\n%s", err, out)
	}

	r.kinds = []connKind{
		{"ssh", append(slices.Clone(plainEnv), r.sshd.Env(r.sshd.Bin, r.sshd.Port)...)},
		{"tls", append(slices.Clone(plainEnv), tlsEnv...)},
		{"context", append(slices.Clone(plainEnv), "DOCKER_CONFIG="+cfg, "DOCKER_CONTEXT="+ctxName)},
	}
	// Where the engine itself listens with TLS (hack/engine starts Docker 29
	// so, and run.sh names it), its own listener too: the engine, not a
	// front, checks the client's certificate.
	if host, certs := os.Getenv("BOTTLE_APPLY_TEST_TLS_ENGINE"), os.Getenv("BOTTLE_APPLY_TEST_TLS_CERTS"); host != "" {
		r.kinds = append(r.kinds, connKind{"tls engine", append(slices.Clone(plainEnv),
			"DOCKER_HOST="+host, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH="+certs)})
	}
	return r
}

// TestE2ERemoteEngines applies, changes nothing, runs commands (with a
// terminal too), copies both ways, reads the logs and destroys, over ssh,
// tcp with TLS and a docker context.
func TestE2ERemoteEngines(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	r := startRemote(t)
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range r.kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			roundTrip(t, c, bin, img, info.ID, k)
		})
	}
}

func roundTrip(t *testing.T, c *client.Client, bin, img, engineID string, k connKind) {
	path, name := example(t, c, "egress.yaml", img)
	cache := t.TempDir()
	env := append(slices.Clone(k.env), "XDG_CACHE_HOME="+cache, "XDG_STATE_HOME="+t.TempDir())
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		start := time.Now()
		defer func() { t.Logf("%s: %q took %s", k.name, args, time.Since(start).Round(time.Millisecond)) }()
		return runCLI(t, bin, stdin, env, args...)
	}

	// The first apply builds the bundle image over this connection, and
	// the self-test copies its probe in and runs it.
	code, out, errs := run("", "-f", path)
	if code != 0 || !strings.Contains(out, "Apply complete: 4 created") || !strings.Contains(out, "checks passed") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run("", "-f", path, "--detailed-exitcode")
	if code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("second apply: exit %d\n%s\n%s", code, out, errs)
	}
	// The engine was asked who it is once, and recorded.
	recs, _ := filepath.Glob(filepath.Join(cache, "bottle-apply", "engines", "*", "engine.json"))
	if len(recs) != 1 {
		t.Fatalf("engine records: %q, want one", recs)
	}
	var rec struct{ Endpoint, ID, OS, Arch string }
	if b, err := os.ReadFile(recs[0]); err != nil || json.Unmarshal(b, &rec) != nil {
		t.Fatalf("engine record %s: %v", recs[0], err)
	}
	if rec.ID != engineID || rec.OS != "linux" || rec.Arch == "" {
		t.Errorf("engine record %+v, want the engine's ID %s", rec, engineID)
	}

	if code, out, errs := run("", "exec", name, "--", "sh", "-c", "echo $((6*7)); exit 4"); code != 4 || out != "42\n" {
		t.Errorf("exec: exit %d, stdout %q\n%s", code, out, errs)
	}
	if code, out, errs := run("piped\n", "exec", "-i", name, "--", "cat"); code != 0 || out != "piped\n" {
		t.Errorf("exec -i: exit %d, stdout %q\n%s", code, out, errs)
	}
	execTerminal(t, bin, env, name)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("payload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run("", "cp", filepath.Join(dir, "in.txt"), name+":/tmp/in.txt"); code != 0 {
		t.Fatalf("cp in: exit %d\n%s", code, errs)
	}
	if code, _, errs := run("", "cp", name+":/tmp/in.txt", filepath.Join(dir, "out.txt")); code != 0 {
		t.Fatalf("cp out: exit %d\n%s", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(b) != "payload\n" {
		t.Errorf("copied in and out: %q, %v", b, err)
	}

	// The self-test asked the proxy for a name the bottle does not allow.
	if code, out, errs := run("", "logs", "--denied", name); code != 0 || !strings.Contains(out, "deny ") {
		t.Errorf("logs --denied: exit %d\n%s\n%s", code, out, errs)
	}

	code, out, errs = run("", "-f", path, "--destroy")
	if code != 0 || !strings.Contains(out, "Destroy complete: 0 created, 0 started, 0 replaced, 4 deleted") {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("left after destroy: %q", left)
	}
}

// execTerminal runs `exec -it NAME -- sh` on a terminal, as a person
// would: a command typed in is answered, and the shell's exit code is
// bottle-apply's.
func execTerminal(t *testing.T, bin string, env []string, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "exec", "-it", name, "--", "sh")
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var (
		mu  sync.Mutex
		got bytes.Buffer
	)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := tty.Read(b)
			mu.Lock()
			got.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	screen := func() string {
		mu.Lock()
		defer mu.Unlock()
		return got.String()
	}
	waitFor := func(s string) {
		t.Helper()
		for !strings.Contains(screen(), s) {
			if ctx.Err() != nil {
				t.Fatalf("exec -it: no %q on the terminal:\n%q", s, screen())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The typed line is echoed as typed; only the shell's answer holds 42.
	if _, err := tty.Write([]byte("[ -t 0 ] && echo tty-$((6*7))\r")); err != nil {
		t.Fatal(err)
	}
	waitFor("tty-42")
	if _, err := tty.Write([]byte("exit 3\r")); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exec -it: %v, want exit 3; the terminal:\n%q", err, screen())
	}
}

// TestE2EEngineAddressesThatCannotWork: an engine address that can never
// work fails at once, saying why, in a dry run (whose first call is a
// list) as in an apply (whose first call asks the engine who it is); a
// refused connection is still retried, as an engine that restarts is.
func TestE2EEngineAddressesThatCannotWork(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	r := startRemote(t)
	path, _ := example(t, c, "hello.yaml", "bottle-apply-test/never-pulled:none")
	other := testenv.NewCerts(t)
	tlsHost := "DOCKER_HOST=tcp://" + r.front.Addr
	cases := []struct {
		name string
		env  []string
		want []string // in stderr
	}{
		{"unknown scheme", []string{"DOCKER_HOST=foo://127.0.0.1:2375"},
			[]string{`DOCKER_HOST "foo://127.0.0.1:2375": not an engine address: unknown scheme "foo"`}},
		{"ssh to a host that does not resolve", append(r.sshd.Env(r.sshd.Bin, 0), "DOCKER_HOST=ssh://u@"+unresolvable),
			[]string{"Could not resolve hostname " + unresolvable, "ssh cannot reach or log in to the engine's host", "not retried"}},
		{"tcp to a host that does not resolve", []string{"DOCKER_HOST=tcp://" + unresolvable + ":2376"},
			[]string{`the engine's host "` + unresolvable + `" does not resolve`, "not retried"}},
		{"ssh with a key the host refuses", r.sshd.Env(r.sshd.BadKeyBin, r.sshd.Port),
			[]string{"Permission denied (publickey)", "ssh cannot reach or log in to the engine's host", "not retried"}},
		{"ssh to a host without docker", r.sshd.Env(r.sshd.Bin, r.sshd.NoDockerPort),
			[]string{"docker: command not found", "the host has no docker CLI", "not retried"}},
		{"a client certificate the engine refuses", []string{tlsHost, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + testenv.PEMDir(t, r.certs.CA.Cert, other.Client)},
			[]string{"the engine refused the TLS handshake", "not retried"}},
		{"an engine certificate the client does not trust", []string{tlsHost, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + other.ClientDir(t)},
			[]string{"x509: certificate signed by unknown authority", "the engine's TLS certificate is not one the client trusts", "not retried"}},
	}
	for _, tc := range cases {
		for _, mode := range []string{"dry run", "apply"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				env := append(slices.Clone(plainEnv), tc.env...)
				env = append(env, "XDG_CACHE_HOME="+t.TempDir(), "XDG_STATE_HOME="+t.TempDir())
				args := []string{"-f", path}
				if mode == "dry run" {
					args = append(args, "--dry-run")
				}
				start := time.Now()
				code, out, errs := runCLI(t, bin, "", env, args...)
				took := time.Since(start)
				t.Logf("%s: failed in %s", tc.name, took.Round(time.Millisecond))
				if code != 1 || out != "" {
					t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(errs, w) {
						t.Errorf("stderr lacks %q:\n%s", w, errs)
					}
				}
				if strings.Contains(errs, "observing again") || strings.Contains(errs, "trying again") {
					t.Errorf("retried:\n%s", errs)
				}
				if took > 10*time.Second {
					t.Errorf("took %s to fail, want at most 10s", took)
				}
			})
		}
	}
}

// unresolvable is a host name that no lookup can answer, and that no
// lookup is sent for: its first label is longer than DNS allows (63), so
// Go's resolver and glibc's (under ssh) both refuse it before asking any
// server. The test sends nothing past this machine.
var unresolvable = strings.Repeat("x", 64) + ".invalid"

// TestE2EOneLockWhateverTheAddress: the socket, ssh, tcp with TLS and a
// docker context are four addresses of one engine, and take the same
// lock: while another run holds a bottle's lock, none of them applies it.
func TestE2EOneLockWhateverTheAddress(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	r := startRemote(t)
	sock, _ := testenv.UnixSocket()
	kinds := append([]connKind{{"socket", append(slices.Clone(plainEnv), "DOCKER_HOST=unix://"+sock)}}, r.kinds...)
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	path, name := example(t, c, "hello.yaml", img)
	state, cache := t.TempDir(), t.TempDir()
	held, err := lock.Acquire(t.Context(), xdg.LockDirIn(state, app.Engine{ID: info.ID}.LockKey()), []string{name}, 0)
	if err != nil {
		t.Fatal(err)
	}
	envOf := func(k connKind) []string {
		return append(slices.Clone(k.env), "XDG_STATE_HOME="+state, "XDG_CACHE_HOME="+cache)
	}
	for _, k := range kinds {
		code, out, errs := runCLI(t, bin, "", envOf(k), "-f", path, "--lock-timeout", "500ms", "--no-verify")
		if code != 1 || !strings.Contains(errs, "bottle "+name+": ") || !strings.Contains(errs, "another bottle-apply") {
			t.Errorf("%s: apply while the lock is held: exit %d\n%s\n%s", k.name, code, out, errs)
		}
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("made while the lock was held: %q", left)
	}
	held.Release()
	// One address applies, another sees the same bottle, a third destroys.
	if code, out, errs := runCLI(t, bin, "", envOf(kinds[1]), "-f", path, "--no-verify"); code != 0 {
		t.Fatalf("%s: apply: exit %d\n%s\n%s", kinds[1].name, code, out, errs)
	}
	if code, out, errs := runCLI(t, bin, "", envOf(kinds[2]), "-f", path, "--detailed-exitcode"); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("%s: second apply: exit %d\n%s\n%s", kinds[2].name, code, out, errs)
	}
	if code, out, errs := runCLI(t, bin, "", envOf(kinds[3]), "-f", path, "--destroy"); code != 0 {
		t.Fatalf("%s: destroy: exit %d\n%s\n%s", kinds[3].name, code, out, errs)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("left after destroy: %q", left)
	}
}

// TestE2ENoOpApplyWithARecordedEngine counts the API calls of a no-op
// apply once the engine is recorded: five (the version ping and a list
// per kind: networks, containers, volumes, images), no docker info. An engine that restarts makes its socket
// anew, and is asked again.
func TestE2ENoOpApplyWithARecordedEngine(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	p := testenv.StartProxy(t, "")
	path, name := example(t, c, "hello.yaml", img)
	env := append(slices.Clone(plainEnv), "DOCKER_HOST="+p.Host(), "XDG_STATE_HOME="+t.TempDir(), "XDG_CACHE_HOME="+t.TempDir())
	infos := func(calls []string) int {
		return len(slices.DeleteFunc(calls, func(s string) bool { return s != "GET /info" }))
	}
	if code, out, errs := runCLI(t, bin, "", env, "-f", path, "--no-verify"); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	if calls := p.Calls(); infos(calls) != 1 {
		t.Errorf("first apply: %d docker info, want 1: %q", infos(calls), calls)
	}
	p.Reset()
	if code, out, errs := runCLI(t, bin, "", env, "-f", path); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("no-op apply: exit %d\n%s\n%s", code, out, errs)
	}
	calls := p.Calls()
	t.Logf("no-op apply with a recorded engine: %d calls: %q", len(calls), calls)
	if len(calls) != 5 || infos(calls) != 0 {
		t.Errorf("no-op apply: %d calls %q, want 5: the ping and one list per kind (networks, containers, volumes, images)", len(calls), calls)
	}

	// The same address, a new socket: the engine is asked again.
	sockPath := strings.TrimPrefix(p.Host(), "unix://")
	p.Close()
	time.Sleep(10 * time.Millisecond) // a new modification time, even on a coarse clock
	upstream, err := testenv.DockerSocket()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := testenv.NewProxy(sockPath, upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if code, out, errs := runCLI(t, bin, "", env, "-f", path); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("no-op apply after the socket was made anew: exit %d\n%s\n%s", code, out, errs)
	}
	if calls := p2.Calls(); infos(calls) != 1 {
		t.Errorf("no-op apply after the socket was made anew: %q, want one docker info", calls)
	}
	if code, out, errs := runCLI(t, bin, "", env, "-f", path, "--destroy"); code != 0 {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("left after destroy: %q", left)
	}
}

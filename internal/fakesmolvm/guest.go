package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// guestCmd is a command "in the guest": a host subprocess in the root.
type guestCmd struct {
	root    string
	workdir string   // a guest path; "" is /
	env     []string // K=V; a later entry wins
	argv    []string
	stdin   io.Reader // nil: no input
	stdout  io.Writer
	stderr  io.Writer
	timeout time.Duration // 0: none
}

// exitTimeout is smolvm's exit code for an exec --timeout.
const exitTimeout = 124

// guestPath maps a guest path into root; it cannot leave root.
func guestPath(root, p string) string {
	return filepath.Join(root, filepath.Clean("/"+p))
}

// runGuest runs g and returns its exit code (128+N for signal N, 127 when
// the command is not found) and whether the timeout killed it.
func runGuest(g guestCmd) (int, bool, error) {
	dir := guestPath(g.root, g.workdir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, false, fakeError("workdir: %v", err)
	}
	cmd := exec.Command(g.argv[0], g.argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, g.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = g.stdin, g.stdout, g.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(g.stderr, "exec failed: %s: No such file or directory\n", g.argv[0])
			return 127, false, nil
		}
		if errors.Is(err, fs.ErrPermission) {
			fmt.Fprintf(g.stderr, "exec failed: %s: Permission denied\n", g.argv[0])
			return 126, false, nil
		}
		return 0, false, fakeError("exec %s: %v", g.argv[0], err)
	}
	pgid := cmd.Process.Pid

	// Pass SIGINT, SIGTERM and SIGHUP on to the whole group, so that a
	// caller cancelling smolvm also ends the "guest" command.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var timer <-chan time.Time
	if g.timeout > 0 {
		t := time.NewTimer(g.timeout)
		defer t.Stop()
		timer = t.C
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timedOut := false
	for {
		select {
		case s := <-sigs:
			syscall.Kill(-pgid, s.(syscall.Signal))
			continue
		case <-timer:
			timedOut = true
			syscall.Kill(-pgid, syscall.SIGKILL)
			continue
		case err := <-done:
			if timedOut {
				return exitTimeout, true, nil
			}
			// Leave no stray children of the command behind.
			syscall.Kill(-pgid, syscall.SIGKILL)
			return exitCode(cmd, err), false, nil
		}
	}
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return 1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if c := cmd.ProcessState.ExitCode(); c >= 0 {
		return c
	}
	if err != nil {
		return 1
	}
	return 0
}

// connect finds a running machine the way exec and cp do.
func (a *app) connect(name string, explicit bool) (*machine, error) {
	st, err := a.store.read()
	if err != nil {
		return nil, err
	}
	m := st.Machines[name]
	hint := "smolvm machine start --name " + name
	if !explicit {
		hint = "smolvm machine start"
	}
	switch {
	case m == nil && explicit:
		return nil, failf("vm not found: %s", name)
	case m == nil:
		return nil, failf("agent operation failed: connect: machine '%s' not found", name)
	case m.State != stateRunning:
		return nil, failf("agent operation failed: connect: machine '%s' is not running. Use '%s' first.", name, hint)
	}
	return m, nil
}

func (a *app) execSpec() *cmdSpec {
	s := &cmdSpec{
		usage: "smolvm machine exec [OPTIONS] <COMMAND>...",
		opts: []opt{
			{long: "name", value: true, meta: "NAME"}, // no -n: exec takes --name only
			{long: "workdir", short: 'w', value: true, meta: "DIR"},
			{long: "env", short: 'e', value: true, multi: true, meta: "KEY=VALUE"},
			{long: "timeout", value: true, meta: "DURATION", check: checkTimeout},
			{long: "interactive", short: 'i'},
			{long: "tty", short: 't'},
			{long: "stream"},
		},
		trailing:         "COMMAND",
		trailingRequired: true,
	}
	if a.env.v19 {
		s.opts = append(s.opts,
			opt{long: "detach", short: 'd'},
			opt{long: "secret-env", value: true, multi: true, meta: "SPEC"},
			opt{long: "secret-file", value: true, multi: true, meta: "SPEC"})
	}
	return s
}

func (a *app) exec(args []string) error {
	spec := a.execSpec()
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	for _, k := range []string{"detach", "secret-env", "secret-file"} {
		if p.has(k) {
			return fakeError("exec --%s is not emulated", k)
		}
	}
	name := p.str("name")
	if !p.has("name") {
		name = defaultName
	}
	m, err := a.connect(name, p.has("name"))
	if err != nil {
		return err
	}
	g := guestCmd{
		root:    a.store.root(name),
		workdir: m.Workdir,
		env:     append(append([]string{}, m.Env...), envList(p.vals["env"])...),
		argv:    p.trail,
		stdout:  a.stdout,
		stderr:  a.stderr,
	}
	if p.has("workdir") {
		g.workdir = p.str("workdir")
	}
	if p.has("interactive") {
		g.stdin = a.stdin
	}
	if p.has("timeout") {
		g.timeout, _ = parseHumanDuration(p.str("timeout"))
	}
	code, _, err := runGuest(g)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

func (a *app) cp(args []string) error {
	spec := &cmdSpec{usage: "smolvm machine cp <SRC> <DST>", pos: []string{"SRC", "DST"}, required: 2}
	if a.env.v19 {
		spec.usage = "smolvm machine cp [OPTIONS] <SRC> <DST>"
		spec.opts = []opt{
			{long: "mode", value: true, meta: "MODE"},
			{long: "uid", value: true, meta: "UID", check: checkU32},
			{long: "gid", value: true, meta: "GID", check: checkU32},
		}
	}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	src, dst := p.pos[0], p.pos[1]
	var name, guest, local string
	upload := false
	if n, g, ok := strings.Cut(src, ":"); ok {
		name, guest, local = n, g, dst
	} else if n, g, ok := strings.Cut(dst, ":"); ok {
		name, guest, local, upload = n, g, src, true
	} else {
		return failf("config operation failed: cp: one of SRC or DST must use machine:path syntax (e.g., myvm:/workspace/file)")
	}
	m, err := a.connect(name, true)
	if err != nil {
		return err
	}
	hostGuest := guestPath(a.store.root(name), guest)
	if !upload {
		data, err := os.ReadFile(hostGuest)
		if err != nil {
			return failf("agent operation failed: read file: %s: %s", guest, pathErr(err))
		}
		if err := os.WriteFile(local, data, 0o644); err != nil {
			return failf("agent operation failed: write local file: %s: %s", local, pathErr(err))
		}
		a.errf("Downloaded %s (%d bytes) -> %s", guest, len(data), local)
		return nil
	}
	data, err := os.ReadFile(local)
	if err != nil {
		return failf("agent operation failed: read local file: %s: %s", local, pathErr(err))
	}
	mode := os.FileMode(0o644)
	if p.has("mode") {
		n, err := strconv.ParseUint(p.str("mode"), 8, 32)
		if err != nil || n > 0o7777 {
			return failf("config operation failed: cp: invalid mode '%s': expected octal like 0644", p.str("mode"))
		}
		mode = os.FileMode(n)
	}
	if readOnlyMount(m.Volumes, guest) {
		return failf("agent operation failed: write file: %s: Read-only file system (os error 30)", guest)
	}
	if err := os.MkdirAll(filepath.Dir(hostGuest), 0o755); err != nil {
		return failf("agent operation failed: write file: %s: %s", guest, pathErr(err))
	}
	if err := os.WriteFile(hostGuest, data, mode); err != nil {
		return failf("agent operation failed: write file: %s: %s", guest, pathErr(err))
	}
	if p.has("mode") {
		if err := os.Chmod(hostGuest, mode); err != nil {
			return failf("agent operation failed: write file: %s: %s", guest, pathErr(err))
		}
	}
	if p.has("uid") || p.has("gid") {
		uid, gid := -1, -1 // -1: unchanged, as chown(2) takes it
		if p.has("uid") {
			uid, _ = strconv.Atoi(p.str("uid"))
		}
		if p.has("gid") {
			gid, _ = strconv.Atoi(p.str("gid"))
		}
		if err := chownUpload(hostGuest, uid, gid); err != nil {
			return failf("agent operation failed: write file: %s: %v", guest, err)
		}
	}
	a.errf("Uploaded %s (%d bytes) -> %s", local, len(data), guest)
	return nil
}

// runEphemeral is "machine run": boot, pull, run the command, throw the
// machine away. Detached runs are not emulated.
func (a *app) runEphemeral(args []string) error {
	spec := &cmdSpec{
		usage: "smolvm machine run [OPTIONS] [COMMAND]...",
		opts: []opt{
			{long: "image", short: 'I', value: true, meta: "IMAGE"},
			{long: "detach", short: 'd'},
			nameOpt(false),
			{long: "interactive", short: 'i'},
			{long: "tty", short: 't'},
			{long: "timeout", value: true, meta: "DURATION", check: checkTimeout},
			{long: "env", short: 'e', value: true, multi: true, meta: "KEY=VALUE"},
			{long: "workdir", short: 'w', value: true, meta: "DIR"},
			{long: "volume", short: 'v', value: true, multi: true, meta: "HOST:GUEST[:ro]", check: checkVolume},
			{long: "port", short: 'p', value: true, multi: true, meta: "HOST:GUEST", check: checkPort},
			{long: "net"},
			{long: "smolfile", short: 's', value: true, meta: "PATH"},
			{long: "cpus", value: true, meta: "N", check: checkU8},
			{long: "mem", value: true, meta: "MiB", check: checkU32},
		},
		trailing: "COMMAND",
	}
	if a.env.v19 {
		spec.opts = append(spec.opts, opt{long: "from", value: true, meta: "PATH"})
	}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	if p.has("name") && !p.has("detach") {
		return usageError(spec, "the following required arguments were not provided:\n  --detach")
	}
	if p.has("from") && p.has("image") {
		return conflict(spec, "from", "image")
	}
	const op = "run"
	if _, err := a.readResources(op, p); err != nil {
		return err
	}
	if err := checkVolumeHosts(op, p.vals["volume"]); err != nil {
		return err
	}
	if p.has("detach") {
		return fakeError("machine run --detach is not emulated")
	}
	if len(p.trail) == 0 {
		return fakeError("machine run without a command is not emulated")
	}
	if p.has("from") {
		if _, err := os.Stat(p.str("from")); err != nil {
			return failf("config operation failed: %s: --from '%s': %s", op, p.str("from"), pathErr(err))
		}
	}
	kind := ""
	if p.has("image") {
		if kind, err = a.classifyImage(p.str("image")); err != nil {
			return err
		}
	}
	if err := a.hypervisorError(); err != nil {
		return err
	}
	root, err := os.MkdirTemp(a.store.path("roots"), ".run-")
	if err != nil {
		return fakeError("%v", err)
	}
	defer os.RemoveAll(root)
	switch kind {
	case "registry":
		if err := a.pull(p.str("image")); err != nil {
			return err
		}
	case "directory":
		if err := copyTree(p.str("image"), root); err != nil {
			return fakeError("copy image directory: %v", err)
		}
	}
	g := guestCmd{
		root: root, workdir: p.str("workdir"), env: envList(p.vals["env"]),
		argv: p.trail, stdout: a.stdout, stderr: a.stderr,
	}
	if p.has("interactive") {
		g.stdin = a.stdin
	}
	if p.has("timeout") {
		g.timeout, _ = parseHumanDuration(p.str("timeout"))
	}
	code, _, err := runGuest(g)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// copyTree copies the directory src into dst, creating dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
		return nil // devices, sockets, pipes: skipped
	})
}

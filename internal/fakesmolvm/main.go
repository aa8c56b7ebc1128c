// Command smolvm is a fake of the smolvm microVM CLI for tests on hosts
// without a hypervisor. It speaks the argv dialects of smolvm 0.8.0 and
// 1.9.3 as /work/shared/reference/smolvm-cli.md describes them, keeps the
// machines in a JSON file, and runs "guest" commands as host subprocesses
// in a per-machine directory. It never boots anything and starts no
// background process.
//
// # Environment
//
//	FAKE_SMOLVM_STATE           required (except for --version and --help):
//	                            the state directory, created if missing.
//	FAKE_SMOLVM_VERSION         "0.8.0" (default) or "1.9.3": selects the argv
//	                            dialect, the messages and the JSON keys.
//	FAKE_SMOLVM_HYPERVISOR      "" (works), "kvm-missing", "kvm-permission" or
//	                            "macos-entitlement": machine start, machine run
//	                            and pack create then fail with exit 1 and the
//	                            platform error, leaving the state unchanged.
//	FAKE_SMOLVM_REGISTRY_IMAGES comma-separated image references the fake
//	                            "registry" serves. A registry image is pulled
//	                            at the first machine start, by machine run and
//	                            by pack create; any other reference fails the
//	                            pull (exit 1, state unchanged). References are
//	                            compared normalised: "alpine" equals
//	                            "docker.io/library/alpine:latest".
//	FAKE_SMOLVM_PULL_CHECK      "1": a reference whose registry host is
//	                            127.0.0.1:PORT, localhost:PORT or [::1]:PORT is
//	                            pulled for real, as an HTTP GET of
//	                            http://HOST/v2/NAME/manifests/TAG accepting the
//	                            OCI and Docker manifest types; it succeeds on a
//	                            200 whether or not FAKE_SMOLVM_REGISTRY_IMAGES
//	                            lists it, and fails otherwise. Nothing but a
//	                            loopback address is ever contacted.
//	FAKE_SMOLVM_NOW             optional unix seconds used as created_at, for
//	                            golden output.
//
// # Files under FAKE_SMOLVM_STATE
//
//	machines.json   the machine records (written as temp file + rename)
//	.lock           flock(2) guarding machines.json
//	argv.log        one JSON array per invocation: the argv after the
//	                program name, appended before the command runs
//	orphans.log     one machine name per line: a running machine deleted by
//	                0.8.0, whose VM real smolvm would leave behind
//	roots/NAME/     the guest filesystem of NAME: exec runs there, cp copies
//	                in and out of it; deleted with the machine
//
// The record of each machine (create flags, env, CIDRs, ...) also appears
// in "ls --json" and "status --json" under the extra key "fake", which real
// smolvm does not print.
//
// # Guest emulation
//
// machine exec runs CMD on the host with the working directory
// roots/NAME/ + DIR (DIR from -w, else the machine's -w, else /), the
// environment PATH (from the host) + the machine's -e + the exec's -e,
// stdin only with -i, and exits with CMD's exit code (128+N for signal N,
// 124 on --timeout, 127 when CMD is not found). Absolute paths inside CMD
// are host paths: they are not mapped into the root. --init commands run
// the same way through "sh -c" on the first start. An --image directory
// (1.9) is copied into the root on the first start. Each start attaches
// the -v mounts: GUEST in the root becomes a symbolic link to HOST, so
// that exec (with a relative path) and cp reach the host directory; cp
// refuses to write into a :ro mount ("Read-only file system"), exec
// cannot be stopped from it. The mounts also appear, as the HTTP API
// shows them ({tag, source, target, readonly}; the tag is made up), under
// "fake" "mounts". cp --uid/--gid (1.9) chown the upload; a fake not run
// as root leaves the owner as it is when it may not change it. Processes CMD leaves
// in the background are killed when it exits. Progress lines ("Starting
// machine", "Pulling image", "Stopping machine", cp's "Uploaded") go to
// stderr, results to stdout, as the reference says.
//
// # Not emulated
//
//   - serve, config, machine shell/monitor/images/prune/data-dir and the 1.9
//     fork commands: usage error, exit 2.
//   - machine run --detach, machine run without a command, exec --detach,
//     exec --secret-env/--secret-file: "Error: fake smolvm: ... is not
//     emulated", exit 1.
//   - machine update takes only --cpus, --mem, --storage, --overlay, --net.
//   - Smolfiles are checked to exist, never read (pack create -s reads only
//     a top-level image key); tar archives given to --image are not unpacked.
//   - pids are made up (41000, 41001, ...): a running record never turns
//     stopped by itself, and health, restart and GPU are recorded only.
//   - Without --name, stop and status act on "default" like a named machine.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	v080 = "0.8.0"
	v193 = "1.9.3"
)

// env is the configuration read from FAKE_SMOLVM_* variables.
type env struct {
	stateDir   string
	version    string
	v19        bool // the 1.x dialect
	hypervisor string
	registry   []string
	pullCheck  bool
	now        time.Time
}

func readEnv(getenv func(string) string) (*env, error) {
	e := &env{
		stateDir:   getenv("FAKE_SMOLVM_STATE"),
		version:    getenv("FAKE_SMOLVM_VERSION"),
		hypervisor: getenv("FAKE_SMOLVM_HYPERVISOR"),
		pullCheck:  getenv("FAKE_SMOLVM_PULL_CHECK") == "1",
		now:        time.Now(),
	}
	switch e.version {
	case "":
		e.version = v080
	case v080, v193:
	default:
		return nil, fakeError("FAKE_SMOLVM_VERSION=%q: want %s or %s", e.version, v080, v193)
	}
	e.v19 = e.version == v193
	switch e.hypervisor {
	case "", "kvm-missing", "kvm-permission", "macos-entitlement":
	default:
		return nil, fakeError("FAKE_SMOLVM_HYPERVISOR=%q: want kvm-missing, kvm-permission, macos-entitlement or nothing", e.hypervisor)
	}
	for _, r := range strings.Split(getenv("FAKE_SMOLVM_REGISTRY_IMAGES"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			e.registry = append(e.registry, r)
		}
	}
	if s := getenv("FAKE_SMOLVM_NOW"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fakeError("FAKE_SMOLVM_NOW=%q: want unix seconds", s)
		}
		e.now = time.Unix(sec, 0)
	}
	return e, nil
}

// exitError ends the program with code after printing msg (if any) on
// stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// failf is a smolvm error: "Error: <msg>" on stderr, exit 1.
func failf(format string, a ...any) error {
	return &exitError{code: 1, msg: "Error: " + fmt.Sprintf(format, a...)}
}

// fakeError is a problem of the fake itself (bad configuration, I/O).
func fakeError(format string, a ...any) error {
	return failf("fake smolvm: "+format, a...)
}

// app is one invocation.
type app struct {
	env    *env
	store  *store
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func (a *app) outf(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }
func (a *app) errf(format string, args ...any) { fmt.Fprintf(a.stderr, format+"\n", args...) }

func main() {
	os.Exit(Main(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// Main runs the fake with args (the argv after the program name) and
// returns the exit code.
func Main(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := run(args, getenv, stdin, stdout, stderr)
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(stderr, ee.msg)
		}
		return ee.code
	default:
		fmt.Fprintln(stderr, "Error: "+err.Error())
		return 1
	}
}

func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e, err := readEnv(getenv)
	if err != nil {
		return err
	}
	a := &app{env: e, stdin: stdin, stdout: stdout, stderr: stderr}
	if e.stateDir != "" {
		dir, err := filepath.Abs(e.stateDir)
		if err != nil {
			return fakeError("FAKE_SMOLVM_STATE: %v", err)
		}
		a.store = &store{dir: dir}
		if err := os.MkdirAll(a.store.path("roots"), 0o755); err != nil {
			return fakeError("state directory: %v", err)
		}
		if err := a.store.logArgv(args); err != nil {
			return fakeError("argv.log: %v", err)
		}
	}
	return a.dispatch(args)
}

const topUsage = "smolvm [OPTIONS] <COMMAND>"

// Announcement is the line by which the fake says, in --version, that it
// is one: bottle-apply's self-test then reports its machines not
// verifiable (providers/smolvm.FakeAnnouncement holds the same words).
const Announcement = "bottle-apply fake smolvm: guest commands run on the host, not in a VM"

var topSpec = &cmdSpec{usage: topUsage}

func (a *app) dispatch(args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, msg: a.helpText()}
	}
	switch args[0] {
	case "--version", "-V":
		// The second line says what this is: the self-test must not take
		// a verdict from guest commands that run on the host.
		a.outf("smolvm %s\n%s", a.env.version, Announcement)
		return nil
	case "--help", "-h", "help":
		fmt.Fprintln(a.stdout, a.helpText())
		return nil
	}
	if looksLikeFlag(args[0]) {
		return unexpected(topSpec, args[0])
	}
	if a.store == nil {
		return fakeError("FAKE_SMOLVM_STATE is not set")
	}
	switch args[0] {
	case "machine", "vm":
		return a.machine(args[1:])
	case "pack":
		return a.pack(args[1:])
	case "serve", "config":
		return notEmulated(topSpec, args[0])
	}
	return usageError(topSpec, fmt.Sprintf("unrecognized subcommand '%s'", args[0]))
}

func (a *app) helpText() string {
	return "smolvm " + a.env.version + " (fake)\n\nUsage: " + topUsage + "\n\nCommands:\n  machine  Manage machines [aliases: vm]\n  pack     Package images into runnable machines\n  serve    (not emulated)\n  config   (not emulated)"
}

// notEmulated is the usage error for a real subcommand the fake leaves out.
func notEmulated(spec *cmdSpec, name string) error {
	return usageError(spec, fmt.Sprintf("unrecognized subcommand '%s'", name),
		"the fake smolvm does not emulate this subcommand")
}

func (a *app) machine(args []string) error {
	spec := &cmdSpec{usage: "smolvm machine <COMMAND>"}
	if len(args) == 0 {
		return usageError(spec, "'smolvm machine' requires a subcommand but one was not provided")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "create":
		return a.create(rest)
	case "start":
		return a.start(rest)
	case "stop":
		return a.stop(rest)
	case "delete", "rm":
		return a.delete(rest)
	case "ls", "list":
		return a.list(rest)
	case "status":
		return a.status(rest)
	case "exec":
		return a.exec(rest)
	case "cp":
		return a.cp(rest)
	case "run":
		return a.runEphemeral(rest)
	case "update":
		return a.updateMachine(rest)
	case "--help", "-h", "help":
		fmt.Fprintln(a.stdout, "Usage: smolvm machine <COMMAND>\n\nCommands: create start stop delete ls status exec cp run update")
		return nil
	case "shell", "sh", "monitor", "images", "prune", "data-dir", "resize", "network-test":
		return notEmulated(spec, sub)
	case "fork", "fork-release", "egress-events":
		if a.env.v19 {
			return notEmulated(spec, sub)
		}
	}
	if looksLikeFlag(sub) {
		return unexpected(spec, sub)
	}
	return usageError(spec, fmt.Sprintf("unrecognized subcommand '%s'", sub))
}

// help prints the usage of spec on stdout, for -h/--help.
func (a *app) help(spec *cmdSpec) error {
	fmt.Fprintf(a.stdout, "Usage: %s\n\nOptions:\n", spec.usage)
	for _, o := range spec.opts {
		short := "    "
		if o.short != 0 {
			short = "-" + string(o.short) + ", "
		}
		long := o.display()
		if o.long == "" {
			long = ""
		}
		fmt.Fprintf(a.stdout, "  %s%s\n", short, long)
	}
	return nil
}

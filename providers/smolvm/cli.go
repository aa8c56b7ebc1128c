package smolvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/bottle-apply/bottle-apply/guest"
)

// cli runs one smolvm subcommand per method. Each method is a thin call
// of a pure argv builder (xxxArgs), which the table tests pin: those argv
// are the contract with smolvm (see the CLI reference for both dialects).
type cli struct {
	r   Runner
	bin string
}

// ErrNotInstalled is returned when the smolvm binary cannot be run.
var ErrNotInstalled = errors.New("smolvm not found on PATH; install it or use backend: docker")

func (c cli) notInstalled(err error) error {
	if c.bin == defaultBinary {
		return fmt.Errorf("%w (%w)", ErrNotInstalled, err)
	}
	return fmt.Errorf("%w: cannot run %s (%w)", ErrNotInstalled, c.bin, err)
}

// couldNotRun reports whether err says the binary is missing (as opposed
// to smolvm having run and failed).
func couldNotRun(err error) bool {
	var re *RunError
	if errors.As(err, &re) && re.ExitCode >= 0 {
		return false
	}
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}

func (c cli) run(ctx context.Context, args []string) ([]byte, error) {
	out, err := c.r.Run(ctx, c.bin, args...)
	if err != nil && couldNotRun(err) {
		return out, c.notInstalled(err)
	}
	return out, err
}

// version runs `smolvm --version`.
// version returns the version smolvm reports, and whether it announces
// itself as bottle-apply's fake (FakeAnnouncement).
func (c cli) version(ctx context.Context) (Version, bool, error) {
	out, err := c.run(ctx, versionArgs())
	if err != nil {
		return Version{}, false, err
	}
	v, err := ParseVersion(string(out))
	return v, strings.Contains(string(out), FakeAnnouncement), err
}

// FakeAnnouncement is what the fake smolvm the tests build says of itself
// in --version (internal/fakesmolvm.Announcement): its guest commands run
// on the host, so no self-test verdict can be taken from them.
const FakeAnnouncement = "bottle-apply fake smolvm"

func versionArgs() []string { return []string{"--version"} }

// createOpts are the flags of `machine create` the provider uses. From and
// Image are exclusive; a Smolfile is never used, so that no file outside
// the argv can change a machine.
type createOpts struct {
	Name       string
	From       string // a .smolmachine sidecar made by pack create
	Image      string // a registry reference or (1.9+) a docker-save archive
	AllowCIDRs []string
	Env        []string // K=V
	CPUs       int      // 0: smolvm's default
	MemoryMiB  int      // 0: smolvm's default
	Workdir    string
	Labels     map[string]string // passed from 1.8 only
	Cmd        []string          // passed from 1.9 only
	Volumes    []string          // -v HOST:GUEST[:ro], in this order
}

// create runs `machine create`. It only writes smolvm's record of the
// machine (state "created"): nothing boots.
func (c cli) create(ctx context.Context, v Version, o createOpts) error {
	if (o.From == "") == (o.Image == "") {
		return fmt.Errorf("internal: create machine %s needs exactly one of a pack and an image", o.Name)
	}
	_, err := c.run(ctx, createArgs(v, o))
	return err
}

func createArgs(v Version, o createOpts) []string {
	args := []string{"machine", "create"}
	if v.AtLeast(v1NameFlag) {
		args = append(args, "--name", o.Name)
	} else {
		args = append(args, o.Name)
	}
	if o.From != "" {
		args = append(args, "--from", o.From)
	} else {
		args = append(args, "--image", o.Image)
	}
	for _, c := range o.AllowCIDRs {
		args = append(args, "--allow-cidr", c)
	}
	for _, e := range slices.Sorted(slices.Values(o.Env)) {
		args = append(args, "-e", e)
	}
	if o.CPUs > 0 {
		args = append(args, "--cpus", strconv.Itoa(o.CPUs))
	}
	if o.MemoryMiB > 0 {
		args = append(args, "--mem", strconv.Itoa(o.MemoryMiB))
	}
	if o.Workdir != "" {
		args = append(args, "-w", o.Workdir)
	}
	for _, vol := range o.Volumes {
		args = append(args, "-v", vol)
	}
	if v.AtLeast(v1Labels) {
		for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
			args = append(args, "--label", k+"="+o.Labels[k])
		}
	}
	// Before 1.9 create has no way to set the workload: the machine runs
	// what its image (or pack) says, and the spec's command is not passed.
	if v.AtLeast(v1Workload) && len(o.Cmd) > 0 {
		args = append(args, "--")
		args = append(args, o.Cmd...)
	}
	return args
}

// start runs `machine start`: it boots the machine (the first time, an
// image machine pulls its image). Already running is success.
func (c cli) start(ctx context.Context, name string) error {
	_, err := c.run(ctx, startArgs(name))
	return err
}

func startArgs(name string) []string { return []string{"machine", "start", "--name", name} }

// stop runs `machine stop`. Not running is success.
func (c cli) stop(ctx context.Context, name string) error {
	_, err := c.run(ctx, stopArgs(name))
	return err
}

func stopArgs(name string) []string { return []string{"machine", "stop", "--name", name} }

// delete runs `machine delete -f` (without -f it would ask, read EOF and
// delete nothing). 0.8.0 does not stop a running machine first.
func (c cli) delete(ctx context.Context, v Version, name string) error {
	_, err := c.run(ctx, deleteArgs(v, name))
	return err
}

func deleteArgs(v Version, name string) []string {
	if v.AtLeast(v1NameFlag) {
		return []string{"machine", "delete", "--name", name, "-f"}
	}
	return []string{"machine", "delete", name, "-f"}
}

// ls runs `machine ls --json`.
func (c cli) ls(ctx context.Context) ([]machine, error) {
	out, err := c.run(ctx, lsArgs())
	if err != nil {
		return nil, err
	}
	return parseMachines(out)
}

func lsArgs() []string { return []string{"machine", "ls", "--json"} }

// status runs `machine status --json`.
func (c cli) status(ctx context.Context, name string) (machine, error) {
	out, err := c.run(ctx, statusArgs(name))
	if err != nil {
		return machine{}, err
	}
	return parseMachine(out)
}

func statusArgs(name string) []string {
	return []string{"machine", "status", "--name", name, "--json"}
}

// exec runs `machine exec` with the given streams and returns the guest's
// exit code. smolvm's own failures (no such machine, not running) also
// exit 1 with "Error: ..." on stderr, which the caller sees.
func (c cli) exec(ctx context.Context, name string, o guest.ExecOptions, stdio guest.Stdio) (int, error) {
	if len(o.Cmd) == 0 {
		return -1, errors.New("exec: no command")
	}
	code, err := c.r.Stream(ctx, stdio, c.bin, execArgs(name, o)...)
	if err != nil && couldNotRun(err) {
		return code, c.notInstalled(err)
	}
	return code, err
}

// execArgs never uses -n: exec knows --name only.
func execArgs(name string, o guest.ExecOptions) []string {
	args := []string{"machine", "exec", "--name", name}
	if o.Interactive {
		args = append(args, "-i")
	}
	if o.TTY {
		args = append(args, "-t")
	}
	if o.Workdir != "" {
		args = append(args, "-w", o.Workdir)
	}
	for _, e := range o.Env {
		args = append(args, "-e", e)
	}
	args = append(args, "--")
	return append(args, o.Cmd...)
}

// cp runs `machine cp SRC DST`, one side written NAME:PATH. With an empty
// side there is nothing to copy: it runs nothing.
func (c cli) cp(ctx context.Context, src, dst string) error {
	if src == "" || dst == "" {
		return nil
	}
	_, err := c.run(ctx, cpArgs(src, dst))
	return err
}

func cpArgs(src, dst string) []string { return []string{"machine", "cp", src, dst} }

// cpOwned uploads with the mode and owner set by smolvm (1.9+: cp
// --mode/--uid/--gid).
func (c cli) cpOwned(ctx context.Context, src, dst string, mode fs.FileMode, uid, gid int) error {
	_, err := c.run(ctx, cpOwnedArgs(src, dst, mode, uid, gid))
	return err
}

func cpOwnedArgs(src, dst string, mode fs.FileMode, uid, gid int) []string {
	return []string{"machine", "cp", "--mode", fmt.Sprintf("%04o", mode.Perm()),
		"--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(gid), src, dst}
}

// execRun runs a setup command in the machine (`machine exec` without
// streams, bounded by Run's timeout): a non-zero exit, the guest's or
// smolvm's, is a *RunError with the output.
func (c cli) execRun(ctx context.Context, name string, o guest.ExecOptions) error {
	_, err := c.run(ctx, execArgs(name, o))
	return err
}

// packCreate runs `pack create`, which boots a VM that pulls image (a
// registry reference: never a local image or an archive) and writes output
// and output.smolmachine.
func (c cli) packCreate(ctx context.Context, image, output string) error {
	_, err := c.run(ctx, packCreateArgs(image, output))
	return err
}

func packCreateArgs(image, output string) []string {
	return []string{"pack", "create", "-I", image, "-o", output}
}

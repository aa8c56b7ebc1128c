package smolvm

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
)

// Guest returns the bottle's agent machine, which must be running for
// exec and cp to work (smolvm starts no machine for them: a stopped or
// missing one fails with exit 1 and "Error: ... is not running").
//
// smolvm's exec has no user flag: for an agent with spec.agent.user (in
// the machine's labelUser, or its record before 1.8), Exec runs the
// command through setpriv (util-linux), which the agent's image must
// have; CopyIn chowns what it copied to that user.
func (p *Provider) Guest(bottleName string) guest.Guest {
	return &machineGuest{p: p, cli: p.cli, name: bottle.ResourceName(bottleName, bottle.RoleAgent), bottle: bottleName}
}

// machineGuest is a bottle's agent machine.
type machineGuest struct {
	p      *Provider
	cli    cli
	name   string // the machine's
	bottle string
}

var _ guest.Guest = (*machineGuest)(nil)

// ErrNoSetpriv says that a command could not run as the agent's user.
var ErrNoSetpriv = errors.New("user needs setpriv (util-linux) in the agent's image")

func (m *machineGuest) String() string { return "the agent machine of bottle " + m.bottle }

// user is the uid:gid the machine's commands run as: "" for the image's
// own. Before 1.8 the record says it (no smolvm call); else the labels.
func (m *machineGuest) user(ctx context.Context) (string, error) {
	rec, err := m.p.readRecord(m.name)
	if err != nil {
		return "", err
	}
	if rec != nil {
		return rec.User, nil
	}
	mach, err := m.cli.status(ctx, m.name)
	if err != nil {
		return "", fmt.Errorf("look up the user of machine %s: %w", m.name, err)
	}
	return mach.Labels[labelUser], nil
}

// execUser is the user an exec runs as: o.User, else the machine's.
func (m *machineGuest) execUser(ctx context.Context, o guest.ExecOptions) (string, error) {
	if o.User != "" {
		u, err := normalUser(o.User)
		if err != nil {
			return "", fmt.Errorf("exec in machine %s: %w", m.name, err)
		}
		return u, nil
	}
	return m.user(ctx)
}

// asUser wraps cmd in setpriv: the real and effective ids become uid:gid,
// with no supplementary groups. The environment (HOME included) is the
// machine's and the exec's, as without a user.
func asUser(user string, cmd []string) []string {
	uid, gid, _ := strings.Cut(user, ":")
	return append([]string{"setpriv", "--reuid=" + uid, "--regid=" + gid, "--clear-groups", "--"}, cmd...)
}

// Exec implements guest.Guest. Height and Width are not passed: smolvm
// sizes the terminal itself.
func (m *machineGuest) Exec(ctx context.Context, o guest.ExecOptions, stdio guest.Stdio) (int, error) {
	user, err := m.execUser(ctx, o)
	if err != nil {
		return -1, err
	}
	if user != "" {
		o.Cmd = asUser(user, o.Cmd)
	}
	code, err := m.cli.exec(ctx, m.name, o, stdio)
	if err != nil {
		return code, fmt.Errorf("exec in machine %s: %w", m.name, err)
	}
	if code == 127 && user != "" && m.noSetpriv(ctx) {
		return code, fmt.Errorf("exec in machine %s as %s: %w", m.name, user, ErrNoSetpriv)
	}
	return code, nil
}

// noSetpriv tells, after an exit 127 (not found), whether setpriv or the
// command was missing: it asks setpriv for its version.
func (m *machineGuest) noSetpriv(ctx context.Context) bool {
	err := m.cli.execRun(ctx, m.name, guest.ExecOptions{Cmd: []string{"setpriv", "--version"}})
	var re *RunError
	return errors.As(err, &re) && re.ExitCode == 127
}

// CopyIn implements guest.Guest. Missing parent directories of an
// absolute dst are made first (smolvm's cp does not make them), owned by
// the machine's user if it has one; what was copied is then chowned to
// that user. A relative dst is passed to smolvm as it is.
func (m *machineGuest) CopyIn(ctx context.Context, src, dst string) error {
	if !path.IsAbs(dst) {
		return m.copy(ctx, hostArg(src), m.name+":"+dst)
	}
	user, err := m.user(ctx)
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", src, m.name, dst, err)
	}
	if user != "" {
		err = m.cli.guestMkdirs(ctx, m.name, path.Dir(dst), user)
	} else if dir := path.Dir(path.Clean(dst)); dir != "/" {
		err = m.cli.execRun(ctx, m.name, guest.ExecOptions{Cmd: []string{"mkdir", "-p", guestRel(dir)}, Workdir: "/"})
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", src, m.name, dst, err)
	}
	if err := m.copy(ctx, hostArg(src), m.name+":"+dst); err != nil {
		return err
	}
	if user == "" {
		return nil
	}
	if err := m.cli.execRun(ctx, m.name, guest.ExecOptions{Cmd: []string{"chown", "-R", user, guestRel(dst)}, Workdir: "/"}); err != nil {
		return fmt.Errorf("copy %s to %s:%s: give it to %s: %w", src, m.name, dst, user, err)
	}
	return nil
}

// CopyOut implements guest.Guest.
func (m *machineGuest) CopyOut(ctx context.Context, src, dst string) error {
	return m.copy(ctx, m.name+":"+src, hostArg(dst))
}

func (m *machineGuest) copy(ctx context.Context, src, dst string) error {
	if err := m.cli.cp(ctx, src, dst); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// hostArg keeps a host path that holds a colon from reading as
// MACHINE:PATH to smolvm.
func hostArg(p string) string {
	if strings.Contains(p, ":") && !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, ".") {
		return "./" + p
	}
	return p
}

package smolvm

import (
	"context"
	"fmt"
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
)

// Guest returns the bottle's agent machine, which must be running for
// exec and cp to work (smolvm starts no machine for them: a stopped or
// missing one fails with exit 1 and "Error: ... is not running").
func (p *Provider) Guest(bottleName string) guest.Guest {
	return &machineGuest{cli: p.cli, name: bottle.ResourceName(bottleName, bottle.RoleAgent), bottle: bottleName}
}

// machineGuest is a bottle's agent machine.
type machineGuest struct {
	cli    cli
	name   string // the machine's
	bottle string
}

var _ guest.Guest = (*machineGuest)(nil)

func (m *machineGuest) String() string { return "the agent machine of bottle " + m.bottle }

// Exec implements guest.Guest. Height and Width are not passed: smolvm
// sizes the terminal itself.
func (m *machineGuest) Exec(ctx context.Context, o guest.ExecOptions, stdio guest.Stdio) (int, error) {
	code, err := m.cli.exec(ctx, m.name, o, stdio)
	if err != nil {
		return code, fmt.Errorf("exec in machine %s: %w", m.name, err)
	}
	return code, nil
}

// CopyIn implements guest.Guest.
func (m *machineGuest) CopyIn(ctx context.Context, src, dst string) error {
	return m.copy(ctx, hostArg(src), m.name+":"+dst)
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

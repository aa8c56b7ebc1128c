package smolvm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// ExecOptions is a command to run in a bottle's machine.
type ExecOptions struct {
	Cmd     []string // required
	Env     []string // K=V, passed in this order
	Workdir string   // "" for the machine's (spec.agent.workdir)
	// Interactive passes standard input; TTY allocates a terminal.
	Interactive, TTY bool
}

// Exec runs a command in a bottle's agent machine with the given streams
// and returns the command's exit code (a non-zero code is not an error).
// smolvm never starts a machine for exec: a stopped one fails with exit 1
// and "Error: ... is not running" on stdio.Err, as does a missing one.
func (p *Provider) Exec(ctx context.Context, bottleName string, o ExecOptions, stdio Stdio) (int, error) {
	name := bottle.ResourceName(bottleName, bottle.RoleAgent)
	code, err := p.cli.exec(ctx, name, o, stdio)
	if err != nil {
		return code, fmt.Errorf("exec in machine %s: %w", name, err)
	}
	return code, nil
}

// Copy copies a file between the host and a bottle's agent machine, which
// must be running. The guest side is written ":PATH" (a leading colon; the
// provider puts the machine's name before it), the host side is a plain
// path; exactly one side is the guest:
//
//	Copy(ctx, "hello", "./notes.txt", ":/work/notes.txt")  // upload
//	Copy(ctx, "hello", ":/work/out.log", "out.log")        // download
//
// A host path that starts with a colon must be written "./:name". With an
// empty side there is nothing to copy, and Copy does nothing.
func (p *Provider) Copy(ctx context.Context, bottleName string, src, dst string) error {
	if src == "" || dst == "" {
		return nil
	}
	name := bottle.ResourceName(bottleName, bottle.RoleAgent)
	gs, gd := strings.HasPrefix(src, ":"), strings.HasPrefix(dst, ":")
	if gs == gd {
		return errors.New("copy: write the machine's side, and only it, as :PATH")
	}
	if src == ":" || dst == ":" {
		return errors.New("copy: the machine's side has no path (write :PATH)")
	}
	if gs {
		src = name + src
	} else {
		dst = name + dst
	}
	if err := p.cli.cp(ctx, src, dst); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/providers/smolvm"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// Guest is a bottle's agent as the exec and cp commands see it, whatever
// its backend.
type Guest interface {
	Exec(ctx context.Context, o ExecOptions, s Streams) (int, error)
	Copy(ctx context.Context, src, dst string) error
}

type ExecOptions struct {
	Cmd         []string
	Env         []string
	Workdir     string
	Interactive bool
	Tty         bool
	Height      uint
	Width       uint
}

type dockerGuest struct {
	p      *docker.Provider
	bottle string
}

func (g dockerGuest) Exec(ctx context.Context, o ExecOptions, s Streams) (int, error) {
	return g.p.Exec(ctx, g.bottle, docker.ExecOptions{Cmd: o.Cmd, Env: o.Env, Workdir: o.Workdir,
		Interactive: o.Interactive, TTY: o.Tty, Height: o.Height, Width: o.Width},
		docker.Stdio{In: s.In, Out: s.Out, Err: s.Err})
}

func (g dockerGuest) Copy(ctx context.Context, src, dst string) error {
	return g.p.Copy(ctx, g.bottle, src, dst)
}

type smolvmGuest struct {
	p      *smolvm.Provider
	bottle string
}

func (g smolvmGuest) Exec(ctx context.Context, o ExecOptions, s Streams) (int, error) {
	return g.p.Exec(ctx, g.bottle, smolvm.ExecOptions{Cmd: o.Cmd, Env: o.Env, Workdir: o.Workdir,
		Interactive: o.Interactive, TTY: o.Tty}, smolvm.Stdio{In: s.In, Out: s.Out, Err: s.Err})
}

func (g smolvmGuest) Copy(ctx context.Context, src, dst string) error {
	return g.p.Copy(ctx, g.bottle, src, dst)
}

// smolvmAgent checks that the bottle has a machine that bottle-apply
// manages.
func smolvmAgent(ctx context.Context, p *smolvm.Provider, bottle string) error {
	rs, err := p.Observe(ctx, reconcile.Scope{Bottles: []string{bottle}})
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Bottle == bottle && r.Role == "agent" {
			if !r.Managed {
				return fmt.Errorf("smolvm machine %s: %w", r.Name, reconcile.ErrNotManaged)
			}
			return nil
		}
	}
	return fmt.Errorf("bottle %s has no smolvm machine", bottle)
}

// FindGuest returns the agent of the named bottle, asking each backend in
// turn.
func FindGuest(ctx context.Context, o *Options, bottle string) (Guest, error) {
	ps, err := NewProviders(o)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, f := range ps.guests {
		g, err := f(ctx, bottle)
		if err == nil {
			return g, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("bottle %s has no agent to run in: %w", bottle, errors.Join(errs...))
}

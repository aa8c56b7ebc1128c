package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/providers/smolvm"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// smolvmAgent checks that the bottle has a machine that bottle-apply
// manages.
func smolvmAgent(ctx context.Context, p *smolvm.Provider, bottleName string) error {
	rs, err := p.Observe(ctx, reconcile.Scope{Bottles: []string{bottleName}})
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Bottle == bottleName && r.Role == bottle.RoleAgent {
			if !r.Managed {
				return fmt.Errorf("smolvm machine %s: %w", r.Name, reconcile.ErrNotManaged)
			}
			return nil
		}
	}
	return fmt.Errorf("bottle %s has no smolvm machine", bottleName)
}

// FindGuest returns the agent of the named bottle, asking each backend in
// turn.
func FindGuest(ctx context.Context, o *Options, bottleName string) (guest.Guest, error) {
	ps, err := NewProviders(o)
	if err != nil {
		return nil, err
	}
	ps.kube.ConnectTo(o.KubeContext)
	return ps.agent(ctx, bottleName)
}

// agent returns the bottle's running agent, from whichever backend has it.
func (ps *Providers) agent(ctx context.Context, bottleName string) (guest.Guest, error) {
	g, derr := ps.docker.Guest(ctx, bottleName, bottle.RoleAgent)
	if derr == nil {
		return g, nil
	}
	serr := smolvmAgent(ctx, ps.smolvm, bottleName)
	if serr == nil {
		return ps.smolvm.Guest(bottleName), nil
	}
	g, kerr := ps.kube.Guest(ctx, bottleName, bottle.RoleAgent)
	if kerr == nil {
		return g, nil
	}
	return nil, fmt.Errorf("bottle %s has no agent to run in: %w", bottleName, errors.Join(derr, serr, kerr))
}

// Exec runs a command in the bottle's agent and returns its exit code.
func Exec(ctx context.Context, o *Options, bottleName string, eo guest.ExecOptions, stdio guest.Stdio) (int, error) {
	g, err := FindGuest(ctx, o, bottleName)
	if err != nil {
		return 0, err
	}
	return g.Exec(ctx, eo, stdio)
}

// Copy copies between the host and the bottle's agent: the host path src
// to dst in the agent when in is set, else src in the agent to the host
// path dst.
func Copy(ctx context.Context, o *Options, bottleName, src, dst string, in bool) error {
	g, err := FindGuest(ctx, o, bottleName)
	if err != nil {
		return err
	}
	if in {
		return g.CopyIn(ctx, src, dst)
	}
	return g.CopyOut(ctx, src, dst)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/providers/smolvm"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// guest is a bottle's agent as the exec and cp commands see it, whatever
// its backend.
type guest interface {
	Exec(ctx context.Context, o execOptions, s Streams) (int, error)
	Copy(ctx context.Context, src, dst string) error
}

type execOptions struct {
	cmd         []string
	env         []string
	workdir     string
	interactive bool
	tty         bool
	height      uint
	width       uint
}

type dockerGuest struct {
	p      *docker.Provider
	bottle string
}

func (g dockerGuest) Exec(ctx context.Context, o execOptions, s Streams) (int, error) {
	return g.p.Exec(ctx, g.bottle, docker.ExecOptions{Cmd: o.cmd, Env: o.env, Workdir: o.workdir,
		Interactive: o.interactive, TTY: o.tty, Height: o.height, Width: o.width},
		docker.Stdio{In: s.In, Out: s.Out, Err: s.Err})
}

func (g dockerGuest) Copy(ctx context.Context, src, dst string) error {
	return g.p.Copy(ctx, g.bottle, src, dst)
}

type smolvmGuest struct {
	p      *smolvm.Provider
	bottle string
}

func (g smolvmGuest) Exec(ctx context.Context, o execOptions, s Streams) (int, error) {
	return g.p.Exec(ctx, g.bottle, smolvm.ExecOptions{Cmd: o.cmd, Env: o.env, Workdir: o.workdir,
		Interactive: o.interactive, TTY: o.tty}, smolvm.Stdio{In: s.In, Out: s.Out, Err: s.Err})
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

// findGuest returns the agent of the named bottle, asking each backend in
// turn.
func findGuest(ctx context.Context, o *options, bottle string) (guest, error) {
	ps, err := newProviders(o)
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

func execCommand(o *options, s Streams, code *int) *cobra.Command {
	var eo execOptions
	c := &cobra.Command{
		Use:   "exec [-i] [-t] [-e K=V] [-w DIR] NAME -- CMD [ARG...]",
		Short: "Run a command in a bottle's agent (stdout, stderr and the exit code are passed through)",
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) < 2 || dash != 1 {
				return usageError("exec takes the bottle's name, then -- and the command: bottle-apply exec NAME -- CMD [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			g, err := findGuest(ctx, o, args[0])
			if err != nil {
				return err
			}
			eo.cmd = args[1:]
			// Raw mode only when stdin goes to the command: without -i,
			// Ctrl-C must still reach bottle-apply.
			if eo.tty && eo.interactive {
				if f, ok := s.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					if w, h, err := term.GetSize(int(f.Fd())); err == nil {
						eo.width, eo.height = uint(w), uint(h)
					}
					old, err := term.MakeRaw(int(f.Fd()))
					if err == nil {
						defer term.Restore(int(f.Fd()), old)
					}
				}
			}
			*code, err = g.Exec(ctx, eo, s)
			return err
		},
	}
	c.Flags().BoolVarP(&eo.interactive, "interactive", "i", false, "pass stdin to the command")
	c.Flags().BoolVarP(&eo.tty, "tty", "t", false, "allocate a terminal")
	c.Flags().StringArrayVarP(&eo.env, "env", "e", nil, "set an environment variable K=V (repeatable)")
	c.Flags().StringVarP(&eo.workdir, "workdir", "w", "", "working directory in the agent")
	return c
}

// guestPath matches NAME:PATH, NAME being a bottle name.
var guestPath = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?):(.*)$`)

func cpCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC NAME:DST | cp NAME:SRC DST",
		Short: "Copy files or directories between the host and a bottle's agent",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("cp takes two arguments: bottle-apply cp SRC NAME:DST, or cp NAME:SRC DST")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			ms, md := guestPath.FindStringSubmatch(src), guestPath.FindStringSubmatch(dst)
			if (ms == nil) == (md == nil) {
				return usageError(fmt.Sprintf("cp %s %s: exactly one side must be NAME:PATH", src, dst))
			}
			bottle := ""
			if ms != nil {
				bottle, src = ms[1], ":"+ms[3]
			} else {
				bottle, dst = md[1], ":"+md[3]
			}
			if strings.TrimPrefix(src, ":") == "" || strings.TrimPrefix(dst, ":") == "" {
				return nil // nothing to copy
			}
			g, err := findGuest(cmd.Context(), o, bottle)
			if err != nil {
				return err
			}
			return g.Copy(cmd.Context(), src, dst)
		},
	}
}

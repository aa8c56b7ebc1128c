// Package app holds bottle-apply's use cases: plan, apply, destroy, the
// self-test, exec, copy and logs, with what they share (the providers and
// the engine they talk to, locks, secrets). The command line is flags and
// one call into this package; providers are translation.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/internal/lock"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
	"github.com/bottle-apply/bottle-apply/verify"
	"github.com/bottle-apply/bottle-apply/view"
)

// Exit codes, as terraform's -detailed-exitcode.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitChanges = 2
)

// Streams are the process's standard streams; tests pass buffers.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Options are what a command line asks of a run.
type Options struct {
	Version          string // bottle-apply's, recorded in a label
	Files            []string
	Destroy          bool
	DryRun           bool
	DetailedExitcode bool
	Output           string
	LogLevel         string
	LogFormat        string
	Timeout          time.Duration
	LockTimeout      time.Duration
	SubnetPool       string
	Verify           bool
	NoVerify         bool
}

// Apply runs apply, destroy or a dry run and prints the plan and result.
func Apply(ctx context.Context, o *Options, s Streams) (int, error) {
	started := time.Now()
	bottles, err := spec.Load(o.Files, s.In)
	if err != nil {
		err = fmt.Errorf("invalid spec, nothing was changed:\n%w", err)
		if o.Output == "json" {
			_ = writeJSON(s.Out, o, nil, nil, nil, err, time.Since(started))
		}
		return ExitError, err
	}
	if o.Verify {
		return verifyOnly(ctx, o, s, bottles, started)
	}
	if !o.Destroy {
		// Secrets are read now, once, and never shown.
		if err := resolveSecrets(bottles); err != nil {
			if o.Output == "json" {
				_ = writeJSON(s.Out, o, nil, nil, nil, err, time.Since(started))
			}
			return ExitError, fmt.Errorf("%w; nothing was changed", err)
		}
	}
	ps, err := NewProviders(o)
	if err != nil {
		return ExitError, err
	}
	providers := ps.all
	if !o.DryRun {
		// One apply or destroy per bottle at a time (per engine).
		names := make([]string, len(bottles))
		for i := range bottles {
			names[i] = bottles[i].Metadata.Name
		}
		locks, err := lock.Acquire(ctx, LockDir(ps.engine), names, o.LockTimeout)
		if err != nil {
			return ExitError, err
		}
		defer locks.Release()
	}
	color := false
	if f, ok := s.Out.(*os.File); ok {
		color = isatty.IsTerminal(f.Fd())
	}
	opts := reconcile.Options{Destroy: o.Destroy, DryRun: o.DryRun}
	if o.Output == "text" {
		opts.OnPlan = func(p *reconcile.Plan) { _ = view.Render(s.Out, p, color) }
	}
	res, runErr := reconcile.Run(ctx, providers, bottles, opts)
	switch {
	case runErr == nil:
	case errors.Is(runErr, context.DeadlineExceeded):
		runErr = fmt.Errorf("%w\nthe run hit --timeout %s: raise it, or check that the engine answers (docker info); what was done is labelled, and the next run converges from it", runErr, o.Timeout)
	case errors.Is(runErr, context.Canceled):
		runErr = fmt.Errorf("%w\ninterrupted: what was done is labelled, and the next run converges from it", runErr)
	}
	var reports []verify.Report
	if runErr == nil && !o.Destroy && !o.DryRun && !o.NoVerify {
		// A bottle that changed is tested again; one that did not was
		// tested when it last changed (bottle-apply --verify tests it now).
		if res.Plan != nil {
			if vb := verifiable(ctx, changedBottles(bottles, res.Plan.ChangedBottles())); len(vb) > 0 {
				reports, runErr = verify.Bottles(ctx, ps.docker, vb)
			}
		}
	}
	if o.Output == "json" {
		if err := writeJSON(s.Out, o, bottles, res, reports, runErr, time.Since(started)); err != nil {
			return ExitError, err
		}
	} else if res != nil && res.Changed() && !o.DryRun && (runErr == nil || errors.Is(runErr, verify.ErrHoles)) {
		verb := "Apply"
		if o.Destroy {
			verb = "Destroy"
		}
		p := res.Plan
		fmt.Fprintf(s.Out, "\n%s complete: %d created, %d started, %d replaced, %d deleted in %s.\n", verb,
			p.Count(reconcile.Create), p.Count(reconcile.Start), p.Count(reconcile.Replace), p.Count(reconcile.Delete),
			time.Since(started).Round(time.Millisecond))
		verify.Print(s.Out, reports)
	}
	if runErr != nil {
		return ExitError, runErr
	}
	if o.DetailedExitcode && res.Changed() {
		return ExitChanges, nil
	}
	return ExitOK, nil
}

type resultDoc struct {
	Command    string                 `json:"command"`
	Bottles    []string               `json:"bottles"`
	DryRun     bool                   `json:"dryRun"`
	Plan       *view.PlanDoc          `json:"plan,omitempty"`
	Steps      []reconcile.StepResult `json:"steps"`
	Rounds     int                    `json:"rounds"`
	Changed    bool                   `json:"changed"`
	Converged  bool                   `json:"converged"`
	DurationMS int64                  `json:"durationMs"`
	// Verify holds the self-test of each bottle tested.
	Verify []verify.Report `json:"verify,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func writeJSON(w io.Writer, o *Options, bottles []spec.Bottle, res *reconcile.Result, reports []verify.Report, runErr error, took time.Duration) error {
	doc := resultDoc{Command: "apply", DryRun: o.DryRun, Steps: []reconcile.StepResult{}, DurationMS: took.Milliseconds(), Verify: reports}
	switch {
	case o.Destroy:
		doc.Command = "destroy"
	case o.Verify:
		doc.Command = "verify"
	}
	for i := range bottles {
		doc.Bottles = append(doc.Bottles, bottles[i].Metadata.Name)
	}
	if res != nil {
		if res.Plan != nil {
			pd := view.Doc(res.Plan)
			doc.Plan = &pd
		}
		if res.Steps != nil {
			doc.Steps = res.Steps
		}
		doc.Rounds, doc.Changed, doc.Converged = res.Rounds, res.Changed(), res.Converged
	}
	if runErr != nil {
		doc.Error = runErr.Error()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// verifyOnly is --verify: the self-test of every bottle, and nothing else.
func verifyOnly(ctx context.Context, o *Options, s Streams, bottles []spec.Bottle, started time.Time) (int, error) {
	ps, err := NewProviders(o)
	if err != nil {
		return ExitError, err
	}
	reports, err := verify.Bottles(ctx, ps.docker, bottles)
	if o.Output == "json" {
		if jerr := writeJSON(s.Out, o, bottles, nil, reports, err, time.Since(started)); jerr != nil {
			return ExitError, jerr
		}
	} else {
		verify.Print(s.Out, reports)
	}
	if err != nil {
		return ExitError, err
	}
	return ExitOK, nil
}

// verifiable keeps the bottles an automatic self-test can run in, and says
// which it leaves out.
func verifiable(ctx context.Context, bottles []spec.Bottle) []spec.Bottle {
	var out []spec.Bottle
	for _, b := range bottles {
		if b.Spec.Backend != spec.BackendDocker {
			zerolog.Ctx(ctx).Info().Str("bottle", b.Metadata.Name).
				Msg("no self-test for a smolvm agent in this build: its confinement is smolvm's --allow-cidr to the bundle")
			continue
		}
		out = append(out, b)
	}
	return out
}

// changedBottles returns the bottles that a run changed something of.
func changedBottles(bottles []spec.Bottle, changed []string) []spec.Bottle {
	var out []spec.Bottle
	for _, b := range bottles {
		if slices.Contains(changed, b.Metadata.Name) {
			out = append(out, b)
		}
	}
	return out
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/docker/docker/client"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/bundle"
	"github.com/bottle-apply/bottle-apply/internal/lock"
	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/providers/smolvm"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
	"github.com/bottle-apply/bottle-apply/view"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, as terraform's -detailed-exitcode.
const (
	exitOK      = 0
	exitError   = 1
	exitChanges = 2
)

// Streams are the process's standard streams; tests pass buffers.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

type options struct {
	files            []string
	destroy          bool
	dryRun           bool
	detailedExitcode bool
	output           string
	logLevel         string
	logFormat        string
	timeout          time.Duration
	lockTimeout      time.Duration
	subnetPool       string
	verify           bool
	noVerify         bool
}

// Run is the whole program but for os.Exit: it parses args, runs the
// command and returns the exit code.
func Run(ctx context.Context, args []string, s Streams) int {
	var o options
	code := exitOK
	root := &cobra.Command{
		Use:   "bottle-apply -f FILE [flags]",
		Short: "Converge agent sandboxes (bottles) to their YAML spec",
		Long: "bottle-apply reads bottle specs, observes what exists (networks, containers, VMs),\n" +
			"and creates, starts, replaces or deletes resources until the two match.",
		Version: version,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Sprintf("unknown command %q for \"bottle-apply\" (specs are passed with -f)", args[0]))
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.files) == 0 {
				return usageError("no spec given: pass -f FILE, -f DIR or -f - (repeatable)")
			}
			if o.verify && (o.destroy || o.dryRun || o.noVerify) {
				return usageError("--verify runs the self-test alone; it does not go with --destroy, --dry-run or --no-verify")
			}
			var err error
			code, err = apply(cmd.Context(), &o, s)
			return err
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err.Error()) })
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	f := root.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "spec file, directory of *.yaml files, or - for stdin (repeatable)")
	f.BoolVar(&o.destroy, "destroy", false, "delete every resource of the bottles, dependents first")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&o.detailedExitcode, "detailed-exitcode", false, "exit 0 when nothing changed, 1 on error, 2 when changes were present")
	f.StringVar(&o.subnetPool, "subnet-pool", bottle.DefaultSubnetPool, "range that automatic /24 bottle subnets come from")
	f.BoolVar(&o.verify, "verify", false, "change nothing: run the isolation self-test in each bottle's agent and fail naming any hole")
	f.BoolVar(&o.noVerify, "no-verify", false, "skip the self-test that follows an apply that changed a bottle")
	pf := root.PersistentFlags()
	pf.StringVarP(&o.output, "output", "o", "text", "result format: text or json (on stdout)")
	pf.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error (logs go to stderr)")
	pf.StringVar(&o.logFormat, "log-format", "console", "log format: console or json")
	pf.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on a whole apply or destroy (0: none)")
	f.DurationVar(&o.lockTimeout, "lock-timeout", 2*time.Minute, "how long to wait for another run on the same bottles to finish")
	root.AddCommand(bundleCommand(), execCommand(&o, s, &code), cpCommand(&o), logsCommand(&o), probeCommand(&code))

	var logErr error
	cancel := context.CancelFunc(func() {})
	defer func() { cancel() }()
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(s.Err, o.logLevel, o.logFormat)
		if err != nil {
			return usageError(err.Error())
		}
		if o.output != "text" && o.output != "json" {
			return usageError(fmt.Sprintf("--output %q: want text or json", o.output))
		}
		ctx := log.WithContext(cmd.Context())
		// --timeout bounds apply and destroy only: the bundle program runs
		// until stopped, and exec and cp last as long as the user's command.
		if cmd == root && o.timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, o.timeout)
		}
		cmd.SetContext(ctx)
		return nil
	}
	logErr = root.ExecuteContext(ctx)
	if logErr == nil {
		return code
	}
	var ue usageErr
	if errors.As(logErr, &ue) {
		fmt.Fprintf(s.Err, "bottle-apply: %v\nRun 'bottle-apply --help' for usage.\n", logErr)
		return exitError
	}
	log, _ := newLogger(s.Err, o.logLevel, o.logFormat)
	log.Error().Msg(logErr.Error())
	return exitError
}

type usageErr string

func (e usageErr) Error() string { return string(e) }

func usageError(msg string) error { return usageErr(msg) }

func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, level) {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
		return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
	case "console":
		noColor := true
		if f, ok := w.(*os.File); ok {
			noColor = !isatty.IsTerminal(f.Fd())
		}
		cw := zerolog.ConsoleWriter{Out: w, NoColor: noColor, TimeFormat: "15:04:05"}
		return zerolog.New(cw).Level(lvl).With().Timestamp().Logger(), nil
	}
	return zerolog.Nop(), fmt.Errorf("--log-format %q: want console or json", format)
}

// apply runs apply, destroy or a dry run and prints the plan and result.
func apply(ctx context.Context, o *options, s Streams) (int, error) {
	started := time.Now()
	bottles, err := spec.Load(o.files, s.In)
	if err != nil {
		err = fmt.Errorf("invalid spec, nothing was changed:\n%w", err)
		if o.output == "json" {
			_ = writeJSON(s.Out, o, nil, nil, nil, err, time.Since(started))
		}
		return exitError, err
	}
	if o.verify {
		return verifyOnly(ctx, o, s, bottles, started)
	}
	if !o.destroy {
		// Secrets are read now, once, and never shown.
		if err := resolveSecrets(bottles); err != nil {
			if o.output == "json" {
				_ = writeJSON(s.Out, o, nil, nil, nil, err, time.Since(started))
			}
			return exitError, fmt.Errorf("%w; nothing was changed", err)
		}
	}
	ps, err := newProviders(o)
	if err != nil {
		return exitError, err
	}
	providers := ps.all
	if !o.dryRun {
		// One apply or destroy per bottle at a time (per engine).
		names := make([]string, len(bottles))
		for i := range bottles {
			names[i] = bottles[i].Metadata.Name
		}
		locks, err := lock.Acquire(ctx, lockDir(ps.engine), names, o.lockTimeout)
		if err != nil {
			return exitError, err
		}
		defer locks.Release()
	}
	color := false
	if f, ok := s.Out.(*os.File); ok {
		color = isatty.IsTerminal(f.Fd())
	}
	opts := reconcile.Options{Destroy: o.destroy, DryRun: o.dryRun}
	if o.output == "text" {
		opts.OnPlan = func(p *reconcile.Plan) { _ = view.Render(s.Out, p, color) }
	}
	res, runErr := reconcile.Run(ctx, providers, bottles, opts)
	switch {
	case runErr == nil:
	case errors.Is(runErr, context.DeadlineExceeded):
		runErr = fmt.Errorf("%w\nthe run hit --timeout %s: raise it, or check that the engine answers (docker info); what was done is labelled, and the next run converges from it", runErr, o.timeout)
	case errors.Is(runErr, context.Canceled):
		runErr = fmt.Errorf("%w\ninterrupted: what was done is labelled, and the next run converges from it", runErr)
	}
	var reports []verifyReport
	if runErr == nil && !o.destroy && !o.dryRun && !o.noVerify {
		// A bottle that changed is tested again; one that did not was
		// tested when it last changed (bottle-apply --verify tests it now).
		if res.Plan != nil {
			if vb := verifiable(ctx, changedBottles(bottles, res.Plan.ChangedBottles())); len(vb) > 0 {
				reports, runErr = verifyBottles(ctx, ps, vb)
			}
		}
	}
	if o.output == "json" {
		if err := writeJSON(s.Out, o, bottles, res, reports, runErr, time.Since(started)); err != nil {
			return exitError, err
		}
	} else if res != nil && res.Changed() && !o.dryRun && (runErr == nil || errors.Is(runErr, errHoles)) {
		verb := "Apply"
		if o.destroy {
			verb = "Destroy"
		}
		p := res.Plan
		fmt.Fprintf(s.Out, "\n%s complete: %d created, %d started, %d replaced, %d deleted in %s.\n", verb,
			p.Count(reconcile.Create), p.Count(reconcile.Start), p.Count(reconcile.Replace), p.Count(reconcile.Delete),
			time.Since(started).Round(time.Millisecond))
		printVerify(s.Out, reports)
	}
	if runErr != nil {
		return exitError, runErr
	}
	if o.detailedExitcode && res.Changed() {
		return exitChanges, nil
	}
	return exitOK, nil
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
	Verify []verifyReport `json:"verify,omitempty"`
	Error  string         `json:"error,omitempty"`
}

func writeJSON(w io.Writer, o *options, bottles []spec.Bottle, res *reconcile.Result, reports []verifyReport, runErr error, took time.Duration) error {
	doc := resultDoc{Command: "apply", DryRun: o.dryRun, Steps: []reconcile.StepResult{}, DurationMS: took.Milliseconds(), Verify: reports}
	switch {
	case o.destroy:
		doc.Command = "destroy"
	case o.verify:
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

// providerSet is every backend, for the reconciler and for exec and cp.
type providerSet struct {
	engine string // the Docker engine's address, "" for the default
	docker *docker.Provider
	all    []reconcile.Provider
	guests []func(ctx context.Context, bottle string) (guest, error)
}

func newProviders(o *options) (*providerSet, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	engine := os.Getenv("DOCKER_HOST")
	if host, err := dockerHostFromContext(); err != nil {
		return nil, err
	} else if host != "" {
		opts = append(opts, client.WithHost(host))
		engine = host
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w; check DOCKER_HOST", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for the bundle image: %w", err)
	}
	ref, err := docker.BundleImageRef(exe)
	if err != nil {
		return nil, err
	}
	dp := docker.New(c, docker.Options{BundleImage: ref, BundleBinary: exe, SubnetPool: o.subnetPool, Version: version})
	// smolvm is optional: without the binary it observes nothing, and only
	// smolvm bottles fail, saying so.
	sp := smolvm.New(smolvm.ExecRunner{}, smolvm.Options{Images: dp, Version: version})
	return &providerSet{
		engine: engine,
		docker: dp,
		all:    []reconcile.Provider{dp, sp},
		guests: []func(context.Context, string) (guest, error){
			func(ctx context.Context, bottle string) (guest, error) {
				if _, err := dp.Agent(ctx, bottle); err != nil {
					return nil, err
				}
				return dockerGuest{p: dp, bottle: bottle}, nil
			},
			func(ctx context.Context, bottle string) (guest, error) {
				if err := smolvmAgent(ctx, sp, bottle); err != nil {
					return nil, err
				}
				return smolvmGuest{p: sp, bottle: bottle}, nil
			},
		},
	}, nil
}

// bundleCommand is the program of the built-in bundle image, which holds a
// copy of this very binary.
func bundleCommand() *cobra.Command {
	c := &cobra.Command{
		Use:    "bundle",
		Short:  "Run the bottle's daemons (inside the bundle container)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bundle.Run(cmd.Context(), bundle.ConfigFromEnv(os.Getenv), cmd.OutOrStdout())
		},
	}
	c.AddCommand(bundleStatusCommand())
	return c
}

// lockDir holds the bottles' locks, per engine: the same bottle name on two
// engines is two bottles.
func lockDir(engine string) string {
	base := stateDir()
	if base == "" {
		// No home: a directory of this user's own in the temporary
		// directory (lock.Acquire refuses it if someone else made it).
		base = filepath.Join(os.TempDir(), "bottle-apply-"+strconv.Itoa(os.Geteuid()))
	}
	return lockDirIn(base, engine)
}

func lockDirIn(base, engine string) string {
	sum := sha256.Sum256([]byte(engine))
	return filepath.Join(base, "bottle-apply", "locks", hex.EncodeToString(sum[:])[:12])
}

// verifyOnly is --verify: the self-test of every bottle, and nothing else.
func verifyOnly(ctx context.Context, o *options, s Streams, bottles []spec.Bottle, started time.Time) (int, error) {
	ps, err := newProviders(o)
	if err != nil {
		return exitError, err
	}
	reports, err := verifyBottles(ctx, ps, bottles)
	if o.output == "json" {
		if jerr := writeJSON(s.Out, o, bottles, nil, reports, err, time.Since(started)); jerr != nil {
			return exitError, jerr
		}
	} else {
		printVerify(s.Out, reports)
	}
	if err != nil {
		return exitError, err
	}
	return exitOK, nil
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

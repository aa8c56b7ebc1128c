package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/view"
)

// Run is the whole program but for os.Exit: it parses args, runs the
// command and returns the exit code.
func Run(ctx context.Context, args []string, s Streams) int {
	o := app.Options{Version: version}
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
			if len(o.Files) == 0 {
				return usageError("no spec given: pass -f FILE, -f DIR or -f - (repeatable)")
			}
			if o.Verify && (o.Destroy || o.DryRun || o.NoVerify) {
				return usageError("--verify runs the self-test alone; it does not go with --destroy, --dry-run or --no-verify")
			}
			if o.Volumes && !o.Destroy && !o.Prune {
				return usageError("--volumes goes with --destroy or --prune: it removes the named volumes of the bottles they delete")
			}
			if o.Prune && o.Set == "" {
				return usageError("--prune needs --set NAME: it deletes the bottles of that spec set that are not in the specs, and nothing else; nothing was changed")
			}
			if (o.Set != "" || o.Prune) && (o.Destroy || o.Verify) {
				return usageError("--set and --prune go with an apply: --destroy deletes the bottles of the specs whatever their set, --verify changes nothing")
			}
			if cmd.Flags().Changed("set") {
				if err := bottle.CheckSet(o.Set); err != nil {
					return usageError("--set: " + err.Error())
				}
			}
			if o.ReadyWait < 0 {
				return usageError("--ready-wait must not be negative (0 turns the wait off)")
			}
			var err error
			code, err = runApply(cmd.Context(), &o, s)
			return err
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err.Error()) })
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	f := root.Flags()
	f.StringArrayVarP(&o.Files, "filename", "f", nil, "spec file, directory of *.yaml files, or - for stdin (repeatable)")
	f.BoolVar(&o.Destroy, "destroy", false, "delete every resource of the bottles, dependents first")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&o.DetailedExitcode, "detailed-exitcode", false, "exit 0 when nothing changed, 1 on error, 2 when changes were present")
	f.StringVar(&o.SubnetPool, "subnet-pool", bottle.DefaultSubnetPool, "range that automatic /24 bottle subnets come from")
	f.BoolVar(&o.Verify, "verify", false, "change nothing: run the isolation self-test in each bottle's agent and fail naming any hole")
	f.BoolVar(&o.NoVerify, "no-verify", false, "skip the self-test that follows an apply that changed a bottle")
	f.BoolVar(&o.Volumes, "volumes", false, "with --destroy or --prune: remove the deleted bottles' named volumes too (host directories are never removed)")
	f.StringVar(&o.Set, "set", "", "name the spec set these bottles belong to: recorded on their resources (label "+bottle.LabelSet+"), in no config hash")
	f.BoolVar(&o.Prune, "prune", false, "with --set: also delete the managed bottles of that set that are not in the specs (never another set's, unlabelled or hand-made ones)")
	f.DurationVar(&o.ReadyWait, "ready-wait", 2*time.Second, "how long each started agent must stay running for the apply to succeed (0: do not wait)")
	f.StringSliceVar(&o.KubePodCIDRs, "kube-pod-cidr", nil, "the cluster's pod range(s), for a cluster whose nodes do not tell (kubernetes bottles)")
	f.StringSliceVar(&o.KubeServiceCIDRs, "kube-service-cidr", nil, "the cluster's service range(s), for a cluster without the ServiceCIDR API (kubernetes bottles)")
	f.DurationVar(&o.KubeReadyTimeout, "kube-ready-timeout", app.DefaultKubeReadyTimeout, "how long an apply waits for the pods of kubernetes bottles to run")
	pf := root.PersistentFlags()
	pf.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file of kubernetes bottles (default: KUBECONFIG, else ~/.kube/config)")
	pf.StringVar(&o.KubeContext, "context", "", "kubeconfig context that exec, cp, logs and status look for bottles in (default: the current one; status asks kubernetes only when this or --kubeconfig is given)")
	pf.StringVarP(&o.Output, "output", "o", "text", "result format: text or json (on stdout)")
	pf.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error (logs go to stderr)")
	pf.StringVar(&o.LogFormat, "log-format", "console", "log format: console or json")
	pf.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "bound on a whole apply, destroy or status (0: none)")
	f.DurationVar(&o.LockTimeout, "lock-timeout", 2*time.Minute, "how long to wait for another run on the same bottles to finish")
	root.AddCommand(execCommand(&o, s, &code), cpCommand(&o), logsCommand(&o), bundleCommand(&o), statusCommand(&o, &code), schemaCommand())

	var logErr error
	cancel := context.CancelFunc(func() {})
	defer func() { cancel() }()
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(s.Err, o.LogLevel, o.LogFormat)
		if err != nil {
			return usageError(err.Error())
		}
		if o.Output != "text" && o.Output != "json" {
			return usageError(fmt.Sprintf("--output %q: want text or json", o.Output))
		}
		ctx := log.WithContext(cmd.Context())
		// --timeout bounds apply, destroy and status only: exec and cp
		// last as long as the user's command, logs -f until interrupted.
		if (cmd == root || cmd.Name() == "status") && o.Timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, o.Timeout)
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
	log, _ := newLogger(s.Err, o.LogLevel, o.LogFormat)
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

// runApply is the root command: apply, destroy, a dry run or --verify,
// shown by the view -o picks.
func runApply(ctx context.Context, o *app.Options, s Streams) (int, error) {
	color := false
	if f, ok := s.Out.(*os.File); ok {
		color = isatty.IsTerminal(f.Fd())
	}
	v := view.NewApply(o.Output, s.Out, color)
	res, err := app.Apply(ctx, o, s.In, v.Plan)
	if verr := v.Result(res, err); err == nil && verr != nil {
		err = verr
	}
	if err != nil {
		return exitError, err
	}
	if o.DetailedExitcode && res.Changed() {
		return exitChanges, nil
	}
	return exitOK, nil
}

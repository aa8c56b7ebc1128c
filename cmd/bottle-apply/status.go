package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/view"
)

// statusCommand lists the bottles bottle-apply manages, or those of specs
// with their sync.
func statusCommand(o *app.Options, code *int) *cobra.Command {
	c := &cobra.Command{
		Use:   "status [-f FILE]... [NAME...]",
		Short: "List the bottles bottle-apply manages and their state; with -f, whether each is in sync with its spec",
		Long: "status lists every bottle that bottle-apply manages on the docker engine, and in smolvm when it is\n" +
			"on PATH; on kubernetes only when --context or --kubeconfig is given. With -f it lists the bottles of\n" +
			"the specs and says of each whether it is in sync, drifted (and what an apply would do), or missing.\n" +
			"NAME... narrows the list. It changes nothing and takes no lock.\n\n" +
			"With --detailed-exitcode it exits 2 when a listed bottle is not running (without -f) or not in sync (with -f).",
		ValidArgsFunction: completeBottles(o, "", true),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := app.Status(cmd.Context(), o, cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			if err := view.Status(cmd.OutOrStdout(), res, o.Output == "json", time.Now()); err != nil {
				return err
			}
			if o.DetailedExitcode && res.NotRunning() {
				*code = exitChanges
			}
			return nil
		},
	}
	c.Flags().StringArrayVarP(&o.Files, "filename", "f", nil, "spec file, directory of *.yaml files, or - for stdin (repeatable): list these bottles and their sync")
	c.Flags().BoolVar(&o.DetailedExitcode, "detailed-exitcode", false, "exit 2 when a listed bottle is not running (without -f) or not in sync (with -f)")
	return c
}

// completionTimeout bounds the listing behind a completion: a shell
// waits on it.
const completionTimeout = 5 * time.Second

// completeBottles completes bottle names from status's listing, each
// followed by suffix (":" for cp), for the first argument only unless
// many; its errors are silent, as a shell wants. What looks like a path
// (cp's host side) is left to the shell's file completion.
func completeBottles(o *app.Options, suffix string, many bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		path := strings.ContainsAny(toComplete, ":/") || strings.HasPrefix(toComplete, ".") || strings.HasPrefix(toComplete, "~")
		guestGiven := suffix != "" && slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, suffix) })
		if !many && len(args) > 0 || path || guestGiven {
			return nil, cobra.ShellCompDirectiveDefault
		}
		ctx, cancel := context.WithTimeout(zerolog.Nop().WithContext(cmd.Context()), completionTimeout)
		defer cancel()
		var out []cobra.Completion
		for _, name := range app.BottleNames(ctx, o) {
			if strings.HasPrefix(name, toComplete) && !slices.Contains(args, name) {
				out = append(out, name+suffix)
			}
		}
		d := cobra.ShellCompDirectiveNoFileComp
		if suffix != "" {
			d |= cobra.ShellCompDirectiveNoSpace
		}
		return out, d
	}
}
